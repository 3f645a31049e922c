"""PostgreSQL stores a batch of exposures without locking each visit and person they refer to

Migration n1 checked a statement's new exposures once per reference column, and locked every visit,
person, case and venue they named FOR KEY SHARE, as a foreign key does, so that a concurrent delete
waited for the inserting transaction. A lock is a write to the parent row: for a batch of 12,000
exposures at 10M visits, locking their visits took about 100 ms and their people about 50 ms, against
about 40 ms and 20 ms to check that they exist.

The same guarantee now comes from one transaction-level advisory lock, named by the exposures table:

- the statement trigger after an insert into exposures takes it exclusively, then checks that every
  referenced row exists (without locking it);
- the statement triggers after deleting cases, visits, people or venues take it shared before they do
  the ON DELETE action, and so does the trigger that refuses renumbering a referenced row.

So an insert's check and a delete's cascade never overlap. A delete's cascade that comes second waits for
the inserting transaction and then sees its rows (each statement of a trigger takes a new snapshot under
READ COMMITTED); an insert's check that comes second waits for the deleting transaction and then finds the
row missing, and fails with foreign_key_violation as before. Deletes share the lock: they never wait for
each other. Only the matching job inserts exposures, one batch at a time.

Revision ID: p1_exposure_references_unlocked
Revises: o1_outbox_recipient_hash
"""

import importlib.util
import re
from pathlib import Path

from alembic import op

# revision identifiers, used by Alembic.
revision = "p1_exposure_references_unlocked"
down_revision = "o1_outbox_recipient_hash"
branch_labels = None
depends_on = None


def _n1():
    """Migration n1's module: its references and the functions it created, which downgrade restores."""
    path = Path(__file__).with_name("n1_exposure_references_per_statement.py")
    spec = importlib.util.spec_from_file_location("n1_exposure_references_per_statement", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The lock's two keys: the exposures table's oid, and 1 (the jobs process's lock uses the one-key form).
LOCK_KEYS = "'exposures'::regclass::oid::int, 1"


def _with_lock(function: str, lock: str) -> str:
    """An n1 function, replaced, taking the lock first."""
    head, body = function.split("\nBEGIN", 1)
    head = head.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    return f"{head}\nBEGIN\n  PERFORM {lock}({LOCK_KEYS});{body}"


# n1's check of one reference column: lock the parents it names, and count them.
_LOCKED_CHECK = re.compile(
    r"PERFORM 1 FROM (\w+) WHERE id = ANY\((\w+)\) FOR KEY SHARE;\n\s*GET DIAGNOSTICS found = ROW_COUNT;"
)


def _insert_function(n1) -> str:
    """n1's insert check, counting the parents without locking them, after taking the lock."""
    function, checks = _LOCKED_CHECK.subn(
        r"SELECT count(*) INTO found FROM \1 WHERE id = ANY(\2);", n1._insert_function()
    )
    if checks != len(n1.REFERENCES):
        raise RuntimeError(f"expected {len(n1.REFERENCES)} checks in n1's insert function, found {checks}")
    return _with_lock(function, "pg_advisory_xact_lock")


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    n1 = _n1()
    op.execute(_insert_function(n1))
    for parent in n1.PARENTS:
        op.execute(_with_lock(n1._parent_deleted_function(parent), "pg_advisory_xact_lock_shared"))
        op.execute(_with_lock(n1._parent_renumbered_function(parent), "pg_advisory_xact_lock_shared"))


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    n1 = _n1()

    def replace(function: str) -> str:
        return function.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)

    op.execute(replace(n1._insert_function()))
    for parent in n1.PARENTS:
        op.execute(replace(n1._parent_deleted_function(parent)))
        op.execute(replace(n1._parent_renumbered_function(parent)))
