from tests.payloads import SMS_DLR


def test_sms_dlr_is_stored_and_readable(hooks, api):
    response = hooks.post(SMS_DLR)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body == {"status": "OK", "code": 200, "message": "stored", "events": [SMS_DLR["id"]]}
    message = api(f"/api/v1/messages/{SMS_DLR['id']}").get_json()
    assert message["status"] == "delivered"
    assert message["provider_status"] == "DELIVRD"
    assert [e["status"] for e in message["events"]] == ["delivered"]
