"""The signed token of a rollback confirmation form.

The confirmation page carries what the user saw (user, pipeline, champion and previous
version) signed with the api-server's secret key; the final POST must bring it back, with
``confirm=yes``, within :data:`MAX_AGE` seconds. So a rollback cannot be done by a single
forged request (CSRF), by another user's form, or on a champion that moved since the user
confirmed.
"""

from __future__ import annotations

from typing import Any

SALT = "mlpipe-rollback-confirmation"
MAX_AGE = 600


class ConfirmationError(ValueError):
    """A confirmation token that is missing, forged, expired or not the user's."""


def sign(secret: str, **fields: Any) -> str:
    """A token holding ``fields``, signed with ``secret``."""
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer(secret, salt=SALT).dumps(fields)


def verify(secret: str, token: str, max_age: int = MAX_AGE, **expected: Any) -> dict[str, Any]:
    """The fields of ``token`` if it is genuine, fresh and its ``expected`` fields match; else an error."""
    from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

    if not token:
        raise ConfirmationError("the confirmation is missing: start the rollback again from the Models page")
    try:
        fields = URLSafeTimedSerializer(secret, salt=SALT).loads(token, max_age=max_age)
    except SignatureExpired:
        raise ConfirmationError("the confirmation expired: start the rollback again from the Models page") from None
    except BadSignature:
        raise ConfirmationError("the confirmation is not valid: start the rollback again from the Models page"
                                ) from None
    for key, value in expected.items():
        if fields.get(key) != value:
            raise ConfirmationError(f"the confirmation was made for another {key}: start the rollback again")
    return fields
