"""app.users accepts only a time zone and an exam date every model and client can compute with.

One learner row used to be able to stop the nightly run for everyone:
  * timezone: any non-blank text was accepted. Every local date in the warehouse is
    ``ts at time zone users.timezone``; an unknown name ("Mars/Base") raises
    'time zone not recognized' and fails every model reading the learner's events. A POSIX-style
    zone such as 'UTC+99' is accepted by PostgreSQL but puts local days four days off UTC, outside
    the UTC search windows the incremental models use to find a local day's rows (they assume
    offsets of UTC-12 to UTC+14), so that learner's rows would be silently missed.
    Now the zone must be known and its offset within -12:00..+14:00 (checked in January and July,
    so daylight saving time is covered).
  * exam_date: any date was accepted, and it reaches marts.user_learning_metrics. psycopg (and
    Python's datetime) read dates of the years 1 to 9999 only: a year-10000 exam date made the mart
    unreadable for every BI client. Now it must lie in those years.

Rows already stored that break the new rules are repaired first (time zone 'UTC', exam date null),
with a warning naming how many: they could not be computed at all before.

Revision ID: 0012_learner_row_ranges
Revises: 0011_declared_properties
Create Date: 2026-12-02
"""

from alembic import op

revision = "0012_learner_row_ranges"
down_revision = "0011_declared_properties"
branch_labels = None
depends_on = None

# 12:00 UTC seen in the zone must fall between 00:00 (UTC-12) and 02:00 the next day (UTC+14).
# timezone(text, timestamptz) is immutable, as a check constraint needs; an unknown zone raises
# 'time zone "..." not recognized', which names the problem better than a constraint name would.
TIMEZONE_CHECK = """
    (timestamptz '2026-01-15 12:00:00+00' at time zone timezone)
        between timestamp '2026-01-15 00:00:00' and timestamp '2026-01-16 02:00:00'
    and (timestamptz '2026-07-15 12:00:00+00' at time zone timezone)
        between timestamp '2026-07-15 00:00:00' and timestamp '2026-07-16 02:00:00'
"""
EXAM_DATE_CHECK = "exam_date between date '0001-01-01' and date '9999-12-31'"

REPAIR = f"""
do $repair$
declare
    zone text;
    usable boolean;
    repaired bigint := 0;
    n bigint;
begin
    for zone in select distinct u.timezone from app.users as u loop
        begin
            usable := {TIMEZONE_CHECK.replace("timezone", "zone")};
        exception when others then
            usable := false;
        end;
        if not usable then
            update app.users set timezone = 'UTC' where app.users.timezone = zone;
            get diagnostics n = row_count;
            repaired := repaired + n;
        end if;
    end loop;
    if repaired > 0 then
        raise warning 'app.users: % learners had an unusable time zone, set to UTC', repaired;
    end if;
    update app.users set exam_date = null where not ({EXAM_DATE_CHECK});
    get diagnostics n = row_count;
    if n > 0 then
        raise warning 'app.users: % learners had an exam date outside the years 1-9999, cleared', n;
    end if;
end
$repair$;
"""


def upgrade() -> None:
    op.execute(REPAIR)
    op.execute(
        f"alter table app.users add constraint users_timezone_usable check ({TIMEZONE_CHECK})"
    )
    op.execute(
        f"alter table app.users add constraint users_exam_date_readable check ({EXAM_DATE_CHECK})"
    )


def downgrade() -> None:
    op.execute("alter table app.users drop constraint users_exam_date_readable")
    op.execute("alter table app.users drop constraint users_timezone_usable")
