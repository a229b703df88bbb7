"""HTTP of an :class:`api.services.idempotency.Answer`: a replayed answer says so in a header."""

from __future__ import annotations

from fastapi.responses import Response

from ..services.idempotency import Answer


def respond(answer: Answer) -> Response:
    resp = Response(content=answer.body, status_code=answer.status, media_type="application/json")
    if answer.replayed:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp
