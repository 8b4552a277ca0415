"""Schemathesis hooks for scripts/schemathesis: make the fuzzer's requests reach past auth.

Chat and user bodies name the acting user (`userId`, `creatorId`) and things it owns
(`groupId`, `messageId`); a generated number is someone else (403) or nothing (404), so the
handlers behind those checks would never see generated fields. For most cases these hooks put
the run's own user, group and message in (ARENA_FUZZ_USER_ID, ARENA_FUZZ_GROUP_ID,
ARENA_FUZZ_MESSAGE_ID, set by scripts/schemathesis); the rest keep what was generated, so the
403 and 404 paths stay covered. The choice is a function of the case itself (not `random`), so
Hypothesis can replay and shrink it.
"""
import json
import os
import zlib

import schemathesis

USER = int(os.environ["ARENA_FUZZ_USER_ID"])
GROUP = int(os.environ["ARENA_FUZZ_GROUP_ID"])
MESSAGE = int(os.environ["ARENA_FUZZ_MESSAGE_ID"])

# Body field → the run's own value.
OWN = {"userId": USER, "creatorId": USER, "groupId": GROUP, "messageId": MESSAGE}


def _ours(value) -> bool:
    """Three cases in four get the run's own ids."""
    text = json.dumps(value, sort_keys=True, default=str)
    return zlib.crc32(text.encode()) % 4 != 0


def _operation(ctx):
    op = getattr(ctx, "operation", None)
    return (getattr(op, "method", "").upper(), getattr(op, "path", ""))


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, dict) and _ours(body):
        for key, value in OWN.items():
            if key in body:
                body[key] = value
    return body


@schemathesis.hook
def map_path_parameters(ctx, params):
    if not isinstance(params, dict) or not _ours(params):
        return params
    method, path = _operation(ctx)
    if "groupId" in params:
        params["groupId"] = GROUP
    # /users/{id}: read and update the run's own user, but never delete it (its token would
    # then answer 401 for the rest of the run).
    if "id" in params and path == "/users/{id}" and method != "DELETE":
        params["id"] = USER
    return params


@schemathesis.hook
def map_query(ctx, query):
    if isinstance(query, dict) and _ours(query):
        for key, value in (("userId", USER), ("user_id", USER), ("groupId", GROUP)):
            if key in query:
                query[key] = value
    return query


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # The stateful phase feeds ids from earlier answers (a login's `user_id`) into later calls:
    # whatever generated it, DELETE /users/{id} must not delete the run's own user.
    if (
        case.method.upper() == "DELETE"
        and case.operation.path == "/users/{id}"
        and str((case.path_parameters or {}).get("id")) == str(USER)
    ):
        case.path_parameters["id"] = 0
