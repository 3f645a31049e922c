"""PostgreSQL checks a check-in's person once per statement too, and cascades a person's deletion itself

Migration l1 moved the check of a visit's venue, entrance and kiosk from three foreign keys to one
statement trigger. The person's foreign key was the last per-row check of a kiosk batch's COPY: about
5 us of PostgreSQL's 36 us per kiosk check-in. The same trigger now checks the people too (their rows
locked FOR KEY SHARE, as a foreign-key check does), and the foreign key's two other duties move to
triggers on people:

- deleting people deletes their visits (ON DELETE CASCADE), one statement for all the deleted people,
  after the row-level cascades of people's other foreign keys; the visits' own foreign keys (companions,
  exposures, notices) then act as before;
- changing a referenced person's id fails (NO ACTION).

The lock makes a concurrent delete of a person wait for a transaction that is adding their visit (then
the delete takes the new visit with it), and an insert wait for a transaction deleting the person (then
the insert fails). The erasure and the retention purge delete a person's visits themselves before the
person, as they did. SQLite keeps its foreign key.

Revision ID: n1_checkin_person_per_statement
Revises: m1_index_visit_references
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "n1_checkin_person_per_statement"
down_revision = "m1_index_visit_references"
branch_labels = None
depends_on = None

# (column of checkins, parent table, constraint name)
REFERENCES = (
    ("person_id", "people", "fk_checkins_person_id_people"),
    ("venue_id", "venues", "fk_checkins_venue_id_venues"),
    ("entrance_id", "entrances", "fk_checkins_entrance_id_entrances"),
    ("kiosk_id", "kiosks", "fk_checkins_kiosk_id_kiosks"),
)
PLACES = REFERENCES[1:]  # migration l1's


def _violation(constraint: str, detail: str) -> str:
    return (
        "RAISE foreign_key_violation USING "
        f"MESSAGE = 'insert or update on table \"checkins\" violates foreign key constraint \"{constraint}\"', "
        f"DETAIL = {detail}, CONSTRAINT = '{constraint}', TABLE = 'checkins';"
    )


def _insert_function(name: str, references: tuple[tuple[str, str, str], ...]) -> str:
    declarations = "\n".join(f"  {column}s int[];" for column, _, _ in references)
    collect = ", ".join(
        f"array_agg(DISTINCT {column}) FILTER (WHERE {column} IS NOT NULL)" for column, _, _ in references
    )
    into = ", ".join(f"{column}s" for column, _, _ in references)
    checks = []
    for column, parent, constraint in references:
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
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
{declarations}
  found bigint;
BEGIN
  SELECT {collect} INTO {into} FROM new_checkins;{"".join(checks)}
  RETURN NULL;
END
$$"""


def _update_function(name: str, references: tuple[tuple[str, str, str], ...]) -> str:
    checks = []
    for column, parent, constraint in references:
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
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{"".join(checks)}
  RETURN NULL;
END
$$"""


_PEOPLE_RENUMBERED = """
CREATE FUNCTION people_renumbered_without_checkins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.id <> OLD.id AND EXISTS (SELECT 1 FROM checkins WHERE person_id = OLD.id) THEN
    RAISE foreign_key_violation USING
      MESSAGE = 'update or delete on table "people" violates foreign key constraint "fk_checkins_person_id_people" on table "checkins"',
      DETAIL = format('Key (id)=(%s) is still referenced from table "checkins".', OLD.id),
      CONSTRAINT = 'fk_checkins_person_id_people', TABLE = 'people';
  END IF;
  RETURN NULL;
END
$$"""

_PEOPLE_DELETED = """
CREATE FUNCTION people_deleted_take_their_checkins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM checkins WHERE person_id IN (SELECT id FROM gone_people);
  RETURN NULL;
END
$$"""


def _checkin_triggers(insert_function: str, update_function: str, references: tuple[tuple[str, str, str], ...]):
    op.execute(_insert_function(insert_function, references))
    op.execute(
        f"CREATE TRIGGER {insert_function} AFTER INSERT ON checkins "
        f"REFERENCING NEW TABLE AS new_checkins FOR EACH STATEMENT EXECUTE FUNCTION {insert_function}()"
    )
    op.execute(_update_function(update_function, references))
    columns = ", ".join(column for column, _, _ in references)
    op.execute(
        f"CREATE TRIGGER {update_function} AFTER UPDATE OF {columns} ON checkins "
        f"FOR EACH ROW EXECUTE FUNCTION {update_function}()"
    )


def _drop_checkin_triggers(insert_function: str, update_function: str):
    for name in (insert_function, update_function):
        op.execute(f"DROP TRIGGER {name} ON checkins")
        op.execute(f"DROP FUNCTION {name}()")


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_constraint("fk_checkins_person_id_people", "checkins", type_="foreignkey")
    _drop_checkin_triggers("checkins_places_exist", "checkins_changed_places_exist")
    _checkin_triggers("checkins_references_exist", "checkins_changed_references_exist", REFERENCES)
    op.execute(_PEOPLE_DELETED)
    op.execute(
        "CREATE TRIGGER people_deleted_take_their_checkins AFTER DELETE ON people "
        "REFERENCING OLD TABLE AS gone_people FOR EACH STATEMENT EXECUTE FUNCTION people_deleted_take_their_checkins()"
    )
    op.execute(_PEOPLE_RENUMBERED)
    op.execute(
        "CREATE TRIGGER people_renumbered_without_checkins AFTER UPDATE OF id ON people "
        "FOR EACH ROW EXECUTE FUNCTION people_renumbered_without_checkins()"
    )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in ("people_renumbered_without_checkins", "people_deleted_take_their_checkins"):
        op.execute(f"DROP TRIGGER {name} ON people")
        op.execute(f"DROP FUNCTION {name}()")
    _drop_checkin_triggers("checkins_references_exist", "checkins_changed_references_exist")
    _checkin_triggers("checkins_places_exist", "checkins_changed_places_exist", PLACES)
    op.create_foreign_key(
        "fk_checkins_person_id_people", "checkins", "people", ["person_id"], ["id"], ondelete="CASCADE"
    )
