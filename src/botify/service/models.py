"""The API's bodies as pydantic models: they validate requests and write the OpenAPI document."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from botify import __version__

MAX_USER = 2**31 - 1
MAX_TRACK = 2**62
# User ids kept for people (botify studio's listeners): their events carry `"agent": "person"`, so
# analyses can tell them from simulated listeners while counting them like any other.
PEOPLE_FIRST = 2_000_000_000


class ListenBody(BaseModel):
    """`POST /next/<user>` and `/last/<user>`: the track just played and the share of it played."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)

    track: int = Field(ge=0, le=MAX_TRACK, description="id of the track just played")
    time: float = Field(ge=0, le=1, description="share of the track played, 0..1")


NUMBERS = (float, int)  # what ListenBody takes as a time (strict: no bool, no str)


def read_listen(body: bytes) -> tuple[int, float]:
    """The track and time of a `ListenBody`, or its ValidationError. A well-formed body is read
    with orjson and checked by hand as `ListenBody` would (a third of the cost, per request);
    anything else goes through `ListenBody` itself, for its error message."""
    try:
        fields = orjson.loads(body)
        track, share = fields["track"], fields["time"]
        if type(track) is int and 0 <= track <= MAX_TRACK and type(share) in NUMBERS and 0 <= share <= 1:
            return track, float(share)
    except (orjson.JSONDecodeError, TypeError, KeyError):
        pass
    listen = ListenBody.model_validate_json(body)
    return listen.track, listen.time


class NextAnswer(BaseModel):
    user: int
    track: int = Field(description="the recommended next track")


class LastAnswer(BaseModel):
    user: int


class ErrorAnswer(BaseModel):
    detail: str


def describe(error: ValidationError) -> tuple[int, str]:
    """Status and one readable message for a rejected body: 400 if not JSON, else 422."""
    problems, status = [], 422
    for item in error.errors(include_url=False):
        if item["type"] == "json_invalid":
            return 400, f"body is not valid JSON ({item['msg'].removeprefix('Invalid JSON: ')})"
        where = ".".join(str(part) for part in item["loc"]) or "body"
        given = "" if item["type"] == "missing" else f", got {item['input']!r}"
        problems.append(f"{where}: {item['msg'].lower()}{given}")
    return status, "; ".join(problems) + ' (expected {"track": int, "time": float in [0, 1]})'


def _body(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the course-compatible API."""
    user = {"name": "user", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0, "maximum": MAX_USER}}
    errors = {
        "400": _body(ErrorAnswer, "the body is not JSON"),
        "413": _body(ErrorAnswer, "the body is too large"),
        "422": _body(ErrorAnswer, "a field is missing, mistyped or out of range, or the track is unknown"),
        "503": _body(ErrorAnswer, "the store is unavailable; retry"),
    }
    listen = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ListenBody"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "botify", "version": __version__,
                 "description": "Music recommender service, compatible with the course's botify API."},
        "paths": {
            "/": {"get": {"summary": "Liveness and what this service runs", "responses": {"200": {"description": "alive"}}}},
            "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "the process answers"}}}},
            "/ready": {"get": {"summary": "Readiness: the store answers and holds the data",
                               "responses": {"200": {"description": "ready"}, "503": errors["503"]}}},
            "/admin/reload": {"post": {
                "summary": "Re-read catalog, experiments and artifacts and swap them in without dropping requests",
                "responses": {"200": {"description": "the new data version"},
                              "422": _body(ErrorAnswer, "a file is broken; the running version stays")},
            }},
            "/track/{track}": {"get": {
                "summary": "A track's metadata",
                "parameters": [{"name": "track", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0}}],
                "responses": {"200": {"description": "the track's tracks.json record"},
                              "404": _body(ErrorAnswer, "no such track"), "422": errors["422"]},
            }},
            "/next/{user}": {"post": {
                "summary": "Report the track just played and get the next one",
                "parameters": [user], "requestBody": listen,
                "responses": {"200": _body(NextAnswer, "the next track"), **errors},
            }},
            "/last/{user}": {"post": {
                "summary": "Report the last track of a session",
                "parameters": [user], "requestBody": listen,
                "responses": {"200": _body(LastAnswer, "recorded"), **errors},
            }},
        },
        "components": {"schemas": {model.__name__: model.model_json_schema()
                                   for model in (ListenBody, NextAnswer, LastAnswer, ErrorAnswer)}},
    }
