"""One number's story for the console's tests: an SMS with its reports, a WhatsApp message the
person sent, a call with a recording, and an opt-out, all posted as webhooks; and console users."""

from __future__ import annotations

import copy
import re
import struct
from typing import Any

import sqlalchemy as sa
from flask import Flask

from receiver.models import Recording, Role
from receiver.recordings.jobs import get_jobs
from receiver.users.service import add_user
from tests.payloads import UNSUBSCRIPTION, WHATSAPP_INBOUND, sms
from tests.provider_stub import ProviderStub, voice_record

NUMBER = "919845012345"  # as the platform sends it
AS_SAID = "+91 98450-12345"  # as a customer says it
PASSWORD = "correct horse battery"
SMS_ID = "b34e35ad-fe34-4a8b-977c-b21cd76cd7d6:7"


def silent_mp3(frames: int = 80) -> bytes:
    """A real MP3 (an empty ID3 tag, then silent MPEG-1 Layer III frames: 128 kbit/s, 44.1 kHz,
    mono, 417 bytes each, about 26 ms), which a browser can decode."""
    tag = b"ID3\x04\x00\x00" + struct.pack(">I", 0)
    frame = b"\xff\xfb\x90\xc4" + bytes(413)
    return tag + frame * frames


class Mp3Stub(ProviderStub):
    """The provider stub, serving recordings a browser can play."""

    def audio_for(self, path: str) -> bytes:
        return silent_mp3()


def user(app: Flask, name: str, role: Role) -> str:
    with app.extensions["receiver.db"].new_session() as session:
        add_user(session, name, PASSWORD, role)
    return name


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


def sign_in(client: Any, name: str, password: str = PASSWORD, **kwargs: Any) -> Any:
    page = client.get("/console/sign-in", **kwargs)
    return client.post(
        "/console/sign-in",
        data={"name": name, "password": password, "csrf_token": csrf_of(page.get_data(as_text=True))},
        **kwargs,
    )


def post_story(app: Flask, hooks: Any, stub: ProviderStub) -> dict[str, Any]:
    """Post the number's webhooks; download the call's recording. Return the ids made."""
    hooks.post(sms(id=SMS_ID, mobile=NUMBER, status="AWAITING-DLR", custom="order-5521"))
    hooks.post(sms(id=SMS_ID, mobile=NUMBER, status="DELIVRD", custom="order-5521"))
    inbound = copy.deepcopy(WHATSAPP_INBOUND)
    inbound["payload"]["recipient"]["from"] = NUMBER
    hooks.post(inbound)
    call_id = hooks.post(voice_record(stub, "ok", "call-7", to=NUMBER)).get_json()["events"][0]
    hooks.post(dict(UNSUBSCRIPTION, id=9001, receiver=NUMBER))
    quarantined = hooks.post(sms(id="q-1", mobile=NUMBER, units="two")).get_json()["event"]
    with app.extensions["receiver.db"].new_session() as session:
        recording_id = session.scalars(sa.select(Recording.id).where(Recording.call_id == call_id)).one()
    get_jobs(app).downloader().run(recording_id)
    return {"call": call_id, "recording": recording_id, "quarantined": quarantined}
