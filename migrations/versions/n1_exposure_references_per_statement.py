"""PostgreSQL checks an exposure's case, visits, person and venue once per statement, not once per row

The matching job stores its exposures a thousand rows per statement, about 123 per case. Five foreign
keys looked up and locked a parent row for every one of them: measured at 10M visits, about 77 us of
the database's 130 us per stored exposure, and about half the job's time. Triggers keep the same
guarantee with one check per statement and column:

- after an insert into exposures, one statement trigger collects the distinct ids of each reference
  from the new rows (a transition table), locks those parents FOR KEY SHARE as a foreign-key check
  does, and fails with foreign_key_violation if one is missing;
- an update that sets one of these columns to another non-null value is checked row by row (the code
  only ever sets case_checkin_id to NULL);
- deleting parents does what the foreign keys' ON DELETE did, once per statement: the exposures of a
  deleted case, visit or person go (CASCADE), a deleted case visit leaves its exposures without it
  (SET NULL), and a venue with exposures cannot be deleted (NO ACTION). Changing a referenced id fails.
  The lock above makes a concurrent delete wait for the inserting transaction, whose rows its cascade
  then sees, or the insert wait for the deleting one and then fail.

The errors read like PostgreSQL's own (same SQLSTATE, constraint name and wording). The models keep the
foreign keys; migrations/env.py leaves these five out of the comparison on PostgreSQL (as it does the
check-in's places, migration l1). SQLite keeps its foreign keys: there they cost little.

Revision ID: n1_exposure_references
Revises: m1_index_visit_references
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "n1_exposure_references"
down_revision = "m1_index_visit_references"
branch_labels = None
depends_on = None

# (column of exposures, parent table, constraint name, ON DELETE)
REFERENCES = (
    ("case_id", "cases", "fk_exposures_case_id_cases", "CASCADE"),
    ("case_checkin_id", "checkins", "fk_exposures_case_checkin_id_checkins", "SET NULL"),
    ("checkin_id", "checkins", "fk_exposures_checkin_id_checkins", "CASCADE"),
    ("person_id", "people", "fk_exposures_person_id_people", "CASCADE"),
    ("venue_id", "venues", "fk_exposures_venue_id_venues", None),
)
PARENTS = ("cases", "checkins", "people", "venues")


def _violation(constraint: str, detail: str) -> str:
    return (
        "RAISE foreign_key_violation USING "
        f"MESSAGE = 'insert or update on table \"exposures\" violates foreign key constraint \"{constraint}\"', "
        f"DETAIL = {detail}, CONSTRAINT = '{constraint}', TABLE = 'exposures';"
    )


def _insert_function() -> str:
    declarations = "\n".join(f"  {column}s int[];" for column, _, _, _ in REFERENCES)
    collect = ", ".join(
        f"array_agg(DISTINCT {column}) FILTER (WHERE {column} IS NOT NULL)" for column, _, _, _ in REFERENCES
    )
    into = ", ".join(f"{column}s" for column, _, _, _ in REFERENCES)
    checks = []
    for column, parent, constraint, _ in REFERENCES:
        missing = (
            f"format('Key ({column})=(%s) is not present in table \"{parent}\".', "
            f"(SELECT string_agg(x::text, ', ') FROM unnest({column}s) AS x "
            f"WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = x)))"
        )
        checks.append(
            f"""
  IF {column}s IS NOT NULL THEN
    PERFORM 1 FROM {parent} WHERE id = ANY({column}s) FOR KEY SHARE;
    GET DIAGNOSTICS found = ROW_COUNT;
    IF found < cardinality({column}s) THEN
      {_violation(constraint, missing)}
    END IF;
  END IF;"""
        )
    return f"""
CREATE FUNCTION exposures_references_exist() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
{declarations}
  found bigint;
BEGIN
  SELECT {collect} INTO {into} FROM new_exposures;{"".join(checks)}
  RETURN NULL;
END
$$"""


def _update_function() -> str:
    checks = []
    for column, parent, constraint, _ in REFERENCES:
        detail = f"format('Key ({column})=(%s) is not present in table \"{parent}\".', NEW.{column})"
        checks.append(
            f"""
  IF NEW.{column} IS DISTINCT FROM OLD.{column} AND NEW.{column} IS NOT NULL THEN
    PERFORM 1 FROM {parent} WHERE id = NEW.{column} FOR KEY SHARE;
    IF NOT FOUND THEN
      {_violation(constraint, detail)}
    END IF;
  END IF;"""
        )
    return f"""
CREATE FUNCTION exposures_changed_references_exist() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{"".join(checks)}
  RETURN NULL;
END
$$"""


def _parent_deleted_function(parent: str) -> str:
    """What the foreign keys' ON DELETE did, for one statement's deleted rows of `parent`."""
    actions = []
    order = {"CASCADE": 0, "SET NULL": 1, None: 2}  # what goes first need not be set to NULL
    ours = sorted((r for r in REFERENCES if r[1] == parent), key=lambda r: order[r[3]])
    for column, _table, constraint, on_delete in ours:
        deleted = f"SELECT id FROM old_{parent}"
        if on_delete == "CASCADE":
            actions.append(f"  DELETE FROM exposures WHERE {column} IN ({deleted});")
        elif on_delete == "SET NULL":
            actions.append(f"  UPDATE exposures SET {column} = NULL WHERE {column} IN ({deleted});")
        else:
            actions.append(
                f"""  SELECT e.{column} INTO referenced FROM exposures e JOIN old_{parent} o ON e.{column} = o.id LIMIT 1;
  IF FOUND THEN
    RAISE foreign_key_violation USING
      MESSAGE = 'update or delete on table "{parent}" violates foreign key constraint "{constraint}" on table "exposures"',
      DETAIL = format('Key (id)=(%s) is still referenced from table "exposures".', referenced),
      CONSTRAINT = '{constraint}', TABLE = '{parent}';
  END IF;"""
            )
    body = "\n".join(actions)
    return f"""
CREATE FUNCTION {parent}_deleted_for_exposures() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  referenced int;
BEGIN
{body}
  RETURN NULL;
END
$$"""


def _parent_renumbered_function(parent: str) -> str:
    """Changing the id of a parent row that an exposure refers to fails (ON UPDATE NO ACTION)."""
    checks = []
    for column, table, constraint, _ in REFERENCES:
        if table != parent:
            continue
        checks.append(
            f"""
  IF EXISTS (SELECT 1 FROM exposures WHERE {column} = OLD.id) THEN
    RAISE foreign_key_violation USING
      MESSAGE = 'update or delete on table "{parent}" violates foreign key constraint "{constraint}" on table "exposures"',
      DETAIL = format('Key (id)=(%s) is still referenced from table "exposures".', OLD.id),
      CONSTRAINT = '{constraint}', TABLE = '{parent}';
  END IF;"""
        )
    return f"""
CREATE FUNCTION {parent}_renumbered_for_exposures() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id = OLD.id THEN
    RETURN NULL;
  END IF;{"".join(checks)}
  RETURN NULL;
END
$$"""


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for _column, _parent, constraint, _ in REFERENCES:
        op.drop_constraint(constraint, "exposures", type_="foreignkey")
    op.execute(_insert_function())
    op.execute(
        "CREATE TRIGGER exposures_references_exist AFTER INSERT ON exposures "
        "REFERENCING NEW TABLE AS new_exposures FOR EACH STATEMENT EXECUTE FUNCTION exposures_references_exist()"
    )
    op.execute(_update_function())
    columns = ", ".join(column for column, _, _, _ in REFERENCES)
    op.execute(
        f"CREATE TRIGGER exposures_changed_references_exist AFTER UPDATE OF {columns} ON exposures "
        "FOR EACH ROW EXECUTE FUNCTION exposures_changed_references_exist()"
    )
    for parent in PARENTS:
        op.execute(_parent_deleted_function(parent))
        op.execute(
            f"CREATE TRIGGER {parent}_deleted_for_exposures AFTER DELETE ON {parent} "
            f"REFERENCING OLD TABLE AS old_{parent} FOR EACH STATEMENT EXECUTE FUNCTION {parent}_deleted_for_exposures()"
        )
        op.execute(_parent_renumbered_function(parent))
        op.execute(
            f"CREATE TRIGGER {parent}_renumbered_for_exposures AFTER UPDATE OF id ON {parent} "
            f"FOR EACH ROW EXECUTE FUNCTION {parent}_renumbered_for_exposures()"
        )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for parent in PARENTS:
        op.execute(f"DROP TRIGGER {parent}_renumbered_for_exposures ON {parent}")
        op.execute(f"DROP FUNCTION {parent}_renumbered_for_exposures()")
        op.execute(f"DROP TRIGGER {parent}_deleted_for_exposures ON {parent}")
        op.execute(f"DROP FUNCTION {parent}_deleted_for_exposures()")
    op.execute("DROP TRIGGER exposures_changed_references_exist ON exposures")
    op.execute("DROP FUNCTION exposures_changed_references_exist()")
    op.execute("DROP TRIGGER exposures_references_exist ON exposures")
    op.execute("DROP FUNCTION exposures_references_exist()")
    for column, parent, constraint, on_delete in REFERENCES:
        op.create_foreign_key(constraint, "exposures", parent, [column], ["id"], ondelete=on_delete)
