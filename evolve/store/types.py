"""Column types of the store that migrations use too: kept apart from the schema, so old migrations stay as written."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, Text, TypeDecorator
from sqlalchemy.engine import Dialect

__all__ = ["StoredJSON"]


class _JSONText(TypeDecorator[Any]):
    """JSON held as text, exactly as SQLite holds it. PostgreSQL's json type refuses NaN and infinities, which a
    metric may be (an evaluator's answer, a failed candidate's result); as text they round-trip on every backend."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


#: The type of every JSON column: SQLite's JSON, and text holding the same JSON on PostgreSQL.
StoredJSON = JSON().with_variant(_JSONText(), "postgresql")
