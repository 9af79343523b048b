"""Reference app 1, the framework's limit: Flask under the same gunicorn settings, answering 200.

It reads the body (as any receiver must) and stores nothing.
"""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.route("/hooks/<source>", methods=["GET", "POST", "PUT"])
def receive(source: str) -> tuple[dict[str, object], int]:
    request.get_data(cache=False)
    return {"status": "OK", "code": 200, "message": "ok"}, 200
