"""Fixtures for the formula tests: the sample model's tables on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.formula.support import DB, postgres_url


@pytest.fixture(scope="session")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DB]:
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('formula') / 'f.db'}")
    yield DB(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def pg_db() -> Iterator[DB]:
    url = postgres_url()
    if url is None:
        pytest.skip("METACRM_TEST_POSTGRES_URL is not set: PostgreSQL tests skipped")
    engine = sa.create_engine(url)
    db = DB(engine)
    yield db
    db.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> DB:
    return request.getfixturevalue("sqlite_db" if request.param == "sqlite" else "pg_db")
