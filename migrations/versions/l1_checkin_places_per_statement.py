"""PostgreSQL checks a check-in's venue, entrance and kiosk once per statement, not once per row

A kiosk batch inserts 500 visits with one COPY, all at the same venue, entrance and kiosk. Their three
foreign keys ran a lookup-and-lock of the same parent row 500 times each: about 20 us of the database's
60 us per kiosk check-in. Triggers now keep the same guarantee with one check per statement:

- after an insert into checkins, one statement trigger collects the distinct venue, entrance and kiosk
  ids of the new rows (a transition table), locks those parents FOR KEY SHARE as a foreign-key check
  does, and fails with foreign_key_violation if one is missing;
- an update that changes one of the three columns is checked row by row (no code path does it today);
- deleting a venue, entrance or kiosk, or changing its id, fails while a check-in refers to it, as
  NO ACTION foreign keys do. The lock above makes a concurrent delete wait for the inserting
  transaction (and then fail), or the insert wait for the deleting one (and then fail).

The errors read like PostgreSQL's own (same SQLSTATE, constraint name and wording). The models keep the
foreign keys (they are the schema's logical shape and order the ORM's inserts); migrations/env.py leaves
these three out of the comparison on PostgreSQL. SQLite keeps its foreign keys: there they cost little,
and dropping one means rebuilding the table.

Revision ID: l1_checkin_places_per_statement
Revises: k1_exposures_awaiting_notice
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "l1_checkin_places_per_statement"
down_revision = "k1_exposures_awaiting_notice"
branch_labels = None
depends_on = None

# (column of checkins, parent table, constraint name)
PLACES = (
    ("venue_id", "venues", "fk_checkins_venue_id_venues"),
    ("entrance_id", "entrances", "fk_checkins_entrance_id_entrances"),
    ("kiosk_id", "kiosks", "fk_checkins_kiosk_id_kiosks"),
)


def _violation(constraint: str, detail: str) -> str:
    return (
        "RAISE foreign_key_violation USING "
        f"MESSAGE = 'insert or update on table \"checkins\" violates foreign key constraint \"{constraint}\"', "
        f"DETAIL = {detail}, CONSTRAINT = '{constraint}', TABLE = 'checkins';"
    )


def _insert_function() -> str:
    declarations = "\n".join(f"  {column}s int[];" for column, _, _ in PLACES)
    collect = ", ".join(
        f"array_agg(DISTINCT {column}) FILTER (WHERE {column} IS NOT NULL)" for column, _, _ in PLACES
    )
    into = ", ".join(f"{column}s" for column, _, _ in PLACES)
    checks = []
    for column, parent, constraint in PLACES:
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
CREATE FUNCTION checkins_places_exist() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
{declarations}
  found bigint;
BEGIN
  SELECT {collect} INTO {into} FROM new_checkins;{"".join(checks)}
  RETURN NULL;
END
$$"""


def _update_function() -> str:
    checks = []
    for column, parent, constraint in PLACES:
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
CREATE FUNCTION checkins_changed_places_exist() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN{"".join(checks)}
  RETURN NULL;
END
$$"""


def _parent_function(column: str, parent: str, constraint: str) -> str:
    return f"""
CREATE FUNCTION {parent}_not_referenced_by_checkins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
    RETURN NULL;
  END IF;
  IF EXISTS (SELECT 1 FROM checkins WHERE {column} = OLD.id) THEN
    RAISE foreign_key_violation USING
      MESSAGE = 'update or delete on table "{parent}" violates foreign key constraint "{constraint}" on table "checkins"',
      DETAIL = format('Key (id)=(%s) is still referenced from table "checkins".', OLD.id),
      CONSTRAINT = '{constraint}', TABLE = '{parent}';
  END IF;
  RETURN NULL;
END
$$"""


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for _column, _parent, constraint in PLACES:
        op.drop_constraint(constraint, "checkins", type_="foreignkey")
    op.execute(_insert_function())
    op.execute(
        "CREATE TRIGGER checkins_places_exist AFTER INSERT ON checkins "
        "REFERENCING NEW TABLE AS new_checkins FOR EACH STATEMENT EXECUTE FUNCTION checkins_places_exist()"
    )
    op.execute(_update_function())
    columns = ", ".join(column for column, _, _ in PLACES)
    op.execute(
        f"CREATE TRIGGER checkins_changed_places_exist AFTER UPDATE OF {columns} ON checkins "
        "FOR EACH ROW EXECUTE FUNCTION checkins_changed_places_exist()"
    )
    for column, parent, constraint in PLACES:
        op.execute(_parent_function(column, parent, constraint))
        op.execute(
            f"CREATE TRIGGER {parent}_not_referenced_by_checkins AFTER DELETE OR UPDATE OF id ON {parent} "
            f"FOR EACH ROW EXECUTE FUNCTION {parent}_not_referenced_by_checkins()"
        )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for _column, parent, _constraint in PLACES:
        op.execute(f"DROP TRIGGER {parent}_not_referenced_by_checkins ON {parent}")
        op.execute(f"DROP FUNCTION {parent}_not_referenced_by_checkins()")
    op.execute("DROP TRIGGER checkins_changed_places_exist ON checkins")
    op.execute("DROP FUNCTION checkins_changed_places_exist()")
    op.execute("DROP TRIGGER checkins_places_exist ON checkins")
    op.execute("DROP FUNCTION checkins_places_exist()")
    for column, parent, constraint in PLACES:
        op.create_foreign_key(constraint, "checkins", parent, [column], ["id"])
