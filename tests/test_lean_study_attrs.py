"""A study's attributes in one statement a read or a write (hpsearch/lean_study_attrs.py):
stored as Optuna's ORM stores them, and a missing study refused as Optuna refuses it."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy

from hpsearch.storage import open_storage

VALUES = [{"trial": 3, "why": "lowest loss", "nested": [1.5, None, "é"]}, 7, "text", None]


def _statements(storage) -> list[str]:
    sent: list[str] = []
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute",
                            lambda *args: sent.append(args[2].split()[0]))
    return sent


@pytest.mark.parametrize("kind", ["user", "system"])
def test_attributes_are_stored_and_overwritten_as_optunas_orm_stores_them(storage_url, kind):
    storage = open_storage(storage_url)
    study_id = optuna.create_study(storage=storage)._study_id
    set_attr = getattr(storage, f"set_study_{kind}_attr")
    for index, value in enumerate(VALUES):
        set_attr(study_id, f"key{index}", "first")
        set_attr(study_id, f"key{index}", value)  # the second write replaces the first
    expected = {f"key{index}": value for index, value in enumerate(VALUES)}
    plain = optuna.storages.RDBStorage(storage_url)  # Optuna's own reading, afresh
    assert getattr(plain, f"get_study_{kind}_attrs")(study_id) == expected
    assert getattr(storage, f"get_study_{kind}_attrs")(study_id) == expected
    getattr(plain, f"set_study_{kind}_attr")(study_id, "key0", "by optuna")
    assert getattr(storage, f"get_study_{kind}_attrs")(study_id)["key0"] == "by optuna"


def test_a_read_and_a_write_are_one_statement_each(storage_url):
    storage = open_storage(storage_url)
    study_id = optuna.create_study(storage=storage)._study_id
    storage.set_study_user_attr(study_id, "selection", {"trial": 1})
    sent = _statements(storage)
    storage.set_study_user_attr(study_id, "selection", {"trial": 2})
    write, sent[:] = list(sent), []
    storage.get_study_user_attrs(study_id)
    read, sent[:] = list(sent), []
    storage.set_study_system_attr(study_id, "dashboard:note", "text")
    assert (write, read, sent) == (["INSERT"], ["SELECT"], ["INSERT"])


def test_a_missing_study_is_refused_and_nothing_is_written(storage_url):
    storage = open_storage(storage_url)
    study_id = optuna.create_study(storage=storage)._study_id
    assert storage.get_study_user_attrs(study_id) == {}  # none yet: Optuna's path answers
    for call in (storage.set_study_user_attr, storage.set_study_system_attr):
        with pytest.raises(KeyError):
            call(study_id + 1, "key", 1)
    for read in (storage.get_study_user_attrs, storage.get_study_system_attrs):
        with pytest.raises(KeyError):
            read(study_id + 1)
    with storage.engine.connect() as connection:
        for table in ("study_user_attributes", "study_system_attributes"):
            assert connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 0
