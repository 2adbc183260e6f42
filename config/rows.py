"""Fixed-shape statements with their SQL built once: the hot path's SELECTs, INSERTs and
UPDATEs without the ORM's per-call query compilation.

Django builds and compiles a QuerySet's SQL on every call. For a one-row lookup that is
about 0.6 ms of CPU here, several times what PostgreSQL spends running the statement,
and every API request makes a few such reads: the wallet by its owner, the accounts a
posting locks. Their shape is fixed, so `select` builds the SQL once per shape and
reuses it. Values go through each field's `get_db_prep_value` and results through the
backend's and the field's converters, as the ORM does, so one call works on PostgreSQL
and on SQLite. (No library does this: query-caching packages cache results, not SQL.)

    select(Account, [{"kind": "customer_wallet", "customer_id": pk}], order_by="id", limit=2)

    insert(IdempotencyKey(scope=..., key=...))   # defaults and auto_now as save() fills them
    insert(PaymentEvent(payment=..., type=...))   # an auto-incremented id comes back on the instance
    update(IdempotencyKey, {"id": pk, "state": "in_flight"}, {"state": "done"})  # rows changed
    insert_many([PaymentEvent(...), ...])        # one statement, its rows one JSON parameter on PostgreSQL

`select`'s `where` is a list of conjunctions, OR-ed. In each, a field (by attname) maps to a value
(=), None (IS NULL) or a list, tuple or set (IN; an empty one matches nothing); a field
with a comparison suffix (`remaining__gt`, `expires_at__lte`: gt, gte, lt, lte) maps to a
value it is compared with, NULL never matching, as the ORM's lookups. `order_by` is one
field or several. Anything more is a QuerySet's job.
"""

import datetime
import decimal
import json
import uuid
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache

from django.db import connection, models
from django.db.transaction import TransactionManagementError

_SEQUENCE = (list, tuple, set, frozenset)
_COMPARISONS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def select(
    model: type[models.Model],
    where: Sequence[dict],
    *,
    order_by: str | tuple[str, ...] | None = None,
    limit: int | None = None,
    offset: int = 0,
    for_no_key_update: bool = False,
    skip_locked: bool = False,
    related: tuple[str, ...] = (),
    first_of: tuple[tuple[str, type[models.Model], str], ...] = (),
) -> list[models.Model]:
    """Instances of `model` matching any of `where`'s conjunctions, ordered by the field
    or fields `order_by` (attnames, "-" for descending), at most `limit` of them after
    skipping `offset`. `for_no_key_update`:
    lock the rows as `select_for_update(no_key=True)` does (inside a transaction only;
    a no-op where the backend has no row locks, as on SQLite); with `skip_locked`, rows
    another transaction holds locked are left out, as `select_for_update(skip_locked=True)`.

    In the same statement, as select_related and annotate(Subquery) would: `related`
    names non-null forward foreign keys whose rows are joined and set on each instance
    (no lazy read of them later); each `first_of` entry `(name, Other, fk)` sets the
    attribute `name` to the id of one row of `Other` whose `fk` is this row's id, None
    when there is none."""
    if for_no_key_update and connection.get_autocommit():
        raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
    shape, params = [], []
    for conjunction in where:
        terms = []
        for attname, value in conjunction.items():
            attname, _, lookup = attname.partition("__")
            if lookup:
                if lookup not in _COMPARISONS or value is None or isinstance(value, _SEQUENCE):
                    raise ValueError(f"rows.select: no lookup {lookup!r} for {value!r} (a QuerySet's job)")
                terms.append((attname, _COMPARISONS[lookup]))
                params += _prep(model, attname, [value])
            elif value is None:
                terms.append((attname, None))
            elif isinstance(value, _SEQUENCE):
                values = list(value)
                terms.append((attname, len(values)))
                params += _prep(model, attname, values)
            else:
                terms.append((attname, "="))
                params += _prep(model, attname, [value])
        shape.append(tuple(terms))
    if isinstance(order_by, str):
        order_by = (order_by,)
    sql, columns, converters = _compiled(
        model,
        tuple(shape),
        order_by,
        limit,
        offset,
        for_no_key_update,
        skip_locked,
        connection.vendor,
        connection.alias,
        tuple(related),
        tuple(first_of),
    )
    if sql is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not related and not first_of:
        return [model.from_db(connection.alias, columns, _converted(row, converters)) for row in rows]
    return [_joined(model, columns, _converted(row, converters), related, first_of) for row in rows]


def _joined(model, columns: list, row: list, related: tuple, first_of: tuple) -> models.Model:
    """One row of a select with `related` and `first_of`: the instance, its joined rows
    cached on their foreign keys, and its `first_of` attributes."""
    start = len(columns)
    instance = model.from_db(connection.alias, columns, row[:start])
    for name in related:
        field = model._meta.get_field(name)
        other = field.related_model
        width = len(other._meta.concrete_fields)
        names = [f.attname for f in other._meta.concrete_fields]
        field.set_cached_value(instance, other.from_db(connection.alias, names, row[start : start + width]))
        start += width
    for (name, _other, _fk), value in zip(first_of, row[start:], strict=True):
        setattr(instance, name, value)
    return instance


def _prep(model, attname: str, values: Iterable) -> list:
    field = _fields(model)[attname]
    return [field.get_db_prep_value(value, connection, prepared=False) for value in values]


def _converted(row, converters) -> list:
    row = list(row)
    for index, functions, expression in converters:
        value = row[index]
        for function in functions:
            value = function(value, expression, connection)
        row[index] = value
    return row


@cache
def _fields(model) -> dict:
    return {f.attname: f for f in model._meta.concrete_fields}


@lru_cache(maxsize=1024)
def _compiled(
    model,
    shape: tuple,
    order_by,
    limit,
    offset: int,
    for_no_key_update: bool,
    skip_locked: bool,
    vendor: str,
    alias: str,
    related: tuple = (),
    first_of: tuple = (),
):
    """(SQL, attnames, converters) for one shape of `select`, or SQL None when it can
    match nothing (every conjunction has an empty IN). The attnames are `model`'s; the
    converters cover the joined and `first_of` columns that follow them."""
    quote = connection.ops.quote_name
    fields = list(model._meta.concrete_fields)
    table = model._meta.db_table
    # With a join every column is named with its table: both may have an "id".
    prefix = f"{quote(table)}." if related or first_of else ""
    disjuncts = []
    for terms in shape:
        parts = []
        for attname, kind in terms:
            column = prefix + quote(_fields(model)[attname].column)
            if kind is None:
                parts.append(f"{column} IS NULL")
            elif kind == "=":
                parts.append(f"{column} = %s")
            elif kind == 0:
                parts = None
                break
            elif isinstance(kind, str):
                parts.append(f"{column} {kind} %s")
            else:
                parts.append(f"{column} IN ({', '.join(['%s'] * kind)})")
        if parts is not None:
            disjuncts.append("(" + " AND ".join(parts or ["1 = 1"]) + ")")
    if not disjuncts:
        return None, None, None
    selected = [(table, f) for f in fields]
    joins = ""
    for name in related:
        field = model._meta.get_field(name)
        if not (field.many_to_one or field.one_to_one) or not field.concrete or field.null:
            raise ValueError(f"rows.select: {name!r} is not a non-null forward foreign key of {model.__name__}.")
        other = field.related_model._meta
        joins += (
            f" INNER JOIN {quote(other.db_table)} ON {quote(other.db_table)}.{quote(field.target_field.column)}"
            f" = {prefix}{quote(field.column)}"
        )
        selected += [(other.db_table, f) for f in other.concrete_fields]
    columns = [f"{prefix}{quote(f.column)}" if t == table else f"{quote(t)}.{quote(f.column)}" for t, f in selected]
    for _name, other_model, fk in first_of:
        other = other_model._meta
        fk_column = _fields(other_model)[fk].column
        columns.append(
            f"(SELECT {quote(other.pk.column)} FROM {quote(other.db_table)}"
            f" WHERE {quote(other.db_table)}.{quote(fk_column)} = {prefix}{quote(model._meta.pk.column)} LIMIT 1)"
        )
        selected.append((other.db_table, other.pk))
    sql = f"SELECT {', '.join(columns)} FROM {quote(table)}{joins} WHERE {' OR '.join(disjuncts)}"
    if order_by:
        keys = (
            f"{prefix}{quote(_fields(model)[name.lstrip('-')].column)} {'DESC' if name.startswith('-') else 'ASC'}"
            for name in order_by
        )
        sql += f" ORDER BY {', '.join(keys)}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    elif offset:
        sql += " LIMIT -1" if vendor == "sqlite" else " LIMIT ALL"
    if offset:
        sql += f" OFFSET {int(offset)}"
    if for_no_key_update and connection.features.has_select_for_update:
        lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_no_key_update else " FOR UPDATE"
        # Only this model's rows are locked, as select_for_update(of=("self",)) would.
        sql += lock + (f" OF {quote(table)}" if related and connection.features.has_select_for_update_of else "")
        if skip_locked and connection.features.has_select_for_update_skip_locked:
            sql += " SKIP LOCKED"
    converters = []
    for index, (column_table, f) in enumerate(selected):
        column = f.get_col(column_table)
        functions = connection.ops.get_db_converters(column) + f.get_db_converters(connection)
        if functions:
            converters.append((index, tuple(functions), column))
    return sql, [f.attname for f in fields], tuple(converters)


def insert(instance: models.Model, *, ignore_conflicts: bool = False) -> models.Model | None:
    """INSERT `instance` as `save()` would for a new row (defaults, auto_now_add), without
    signals or full_clean; an auto-incremented primary key left None is filled from the
    database. Raises IntegrityError as save() does, unless `ignore_conflicts`: then a row
    that conflicts with an existing one is skipped (ON CONFLICT DO NOTHING, PostgreSQL
    and SQLite alike) and None returned. Returns the instance."""
    model = type(instance)
    auto_pk = _auto_pk(model) if instance.pk is None else None
    values = [
        f.get_db_prep_save(f.pre_save(instance, add=True), connection) for f in _written(model, auto_pk is not None)
    ]
    sql = _insert_sql(model, auto_pk is not None, ignore_conflicts, connection.vendor)
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        if auto_pk is not None and connection.features.can_return_columns_from_insert:
            # The RETURNING row says whether one was written: sqlite3 counts rowcount only
            # once such a statement has run to its end, so it still reads 0 here.
            row = cursor.fetchone()
            inserted = row is not None
            if inserted:
                instance.pk = row[0]
        else:
            inserted = cursor.rowcount != 0
            if auto_pk is not None and inserted:
                instance.pk = cursor.lastrowid
    if not inserted:
        return None
    instance._state.adding, instance._state.db = False, connection.alias
    return instance


# On SQLite, past this many rows insert_many hands over to bulk_create (its batching
# respects the backend's limit on parameters); below it the SQL is built once per count.
_MANY_AT_MOST = 8


def insert_many(instances: Sequence[models.Model]) -> None:
    """insert() for several new rows of one model in one statement, as bulk_create does,
    without its per-row compilation. Defaults and auto_now as save() fills them; no
    signals; an auto-incremented id left None is filled, in order. On PostgreSQL
    `INSERT ... SELECT ... FROM` json_source, the rows in one JSON parameter, its SQL
    built once per model whatever the count; on SQLite a multi-row VALUES up to
    _MANY_AT_MOST rows, bulk_create beyond. Raises IntegrityError as bulk_create does."""
    if not instances:
        return
    if len(instances) == 1:
        insert(instances[0])
        return
    model = type(instances[0])
    auto_pk = _auto_pk(model) if instances[0].pk is None else None
    if _auto_pk(model) and any((i.pk is None) != (auto_pk is not None) for i in instances):
        # One statement writes one column list: the id column for all rows or for none.
        raise ValueError("insert_many: either every instance has its auto-incremented id or none has.")
    if connection.vendor == "postgresql":
        sql, fields = _json_insert_sql(model, auto_pk is not None)
        params = [json_rows([[to_json(f.pre_save(i, add=True)) for f, to_json in fields] for i in instances])]
    elif len(instances) > _MANY_AT_MOST or (auto_pk and not connection.features.can_return_rows_from_bulk_insert):
        model.objects.bulk_create(instances)
        return
    else:
        fields = _written(model, auto_pk is not None)
        params = [f.get_db_prep_save(f.pre_save(i, add=True), connection) for i in instances for f in fields]
        sql = _insert_sql(model, auto_pk is not None, False, connection.vendor, len(instances))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if auto_pk is not None:
            for instance, (pk,) in zip(instances, cursor.fetchall(), strict=True):
                instance.pk = pk
    for instance in instances:
        instance._state.adding, instance._state.db = False, connection.alias


@cache
def _json_insert_sql(model, auto_pk: bool) -> tuple[str, list]:
    """`INSERT ... SELECT ... FROM` json_source: one parameter, the same SQL whatever the
    number of rows. With each written field, how its value becomes JSON (_to_json)."""
    quote = connection.ops.quote_name
    pk = _auto_pk(model) if auto_pk else None
    fields = _written(model, auto_pk)
    names = ", ".join(quote(f.column) for f in fields)
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({names}) {json_source([f.db_type(connection) for f in fields])}"
    if pk is not None:
        sql += f" RETURNING {quote(pk.column)}"
    return sql, [(f, _to_json(f)) for f in fields]


def json_source(types: Sequence[str]) -> str:
    """PostgreSQL: a row source of the SQL `types` (one per column, modifiers dropped:
    varchar, not varchar(50)) reading the rows from one parameter, json_rows(rows). Its
    text is the same whatever the number of rows, so the driver converts it once and the
    server may keep its plan; a multi-row VALUES list is new SQL for every count, with a
    placeholder per value for the driver to parse and adapt in Python, and arrays for
    unnest are adapted element by element. A jsonb column's value comes as its JSON
    text (a string inside the parameter), so it is stored exactly as the field encodes it."""
    columns = ", ".join(f"(r->>{i})::{t.split('(')[0]}" for i, t in enumerate(types))
    return f"SELECT {columns} FROM jsonb_array_elements(%s::jsonb) r"


# Parameters: psycopg converts a statement with at most this many once and reuses it.
_VALUES_AT_MOST = 50


def row_source(rows: Sequence[Sequence], types: Sequence[str]) -> tuple[str, list]:
    """PostgreSQL: a query yielding `rows` (typed `types`), for `INSERT ... {source}`, a
    FROM's `({source}) v` or a CTE's body, and its parameters. A few rows (the API's one
    debit, its events) are a VALUES list: the planner knows its row count, where it
    estimates a JSON source at 100 rows, enough to make it join by reading every row of
    a mid-size table, and the driver caches a statement of so few parameters. More rows
    are one JSON parameter (json_source): any number fits (PostgreSQL takes at most
    65,535 parameters) and the statement's text stays the same."""
    if len(rows) * len(types) <= _VALUES_AT_MOST:
        one = "(" + ", ".join(f"%s::{t}" for t in types) + ")"
        return "VALUES " + ", ".join([one] * len(rows)), [value for row in rows for value in row]
    return json_source(types), [json_rows(rows)]


def json_rows(rows: Iterable[Sequence]) -> str:
    """The parameter of json_source: rows of values as PostgreSQL reads them back from
    text (uuids, times and decimals as their ISO or decimal text)."""
    return json.dumps(rows if isinstance(rows, list) else list(rows), default=_json_scalar, separators=(",", ":"))


def _json_scalar(value):
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    raise TypeError(f"json_rows: cannot write {type(value).__name__} {value!r} as JSON")


def _to_json(field):
    """How insert_many turns `field`'s value into what json_rows writes: a JSONField's
    value as the text its encoder gives (as the field saves it), one of the types whose
    get_db_prep_save is the identity on PostgreSQL as it is, anything else prepared by
    the field first."""
    if isinstance(field, models.JSONField):
        encoder = field.encoder

        def encoded(value):
            return None if value is None else json.dumps(value, cls=encoder)

        return encoded
    native = (type(None), *_NATIVE.get((field.target_field if field.is_relation else field).get_internal_type(), ()))
    aware = isinstance(field, models.DateTimeField)  # an aware datetime is its own preparation too

    def prepared(value):
        if type(value) in native or (aware and type(value) is datetime.datetime and value.tzinfo is not None):
            return value
        return field.get_db_prep_save(value, connection)

    return prepared


# Per internal type, the Python types whose get_db_prep_save is the identity on PostgreSQL.
_NATIVE = {
    "UUIDField": (uuid.UUID,),
    "CharField": (str,),
    "TextField": (str,),
    "SlugField": (str,),
    "IntegerField": (int,),
    "BigIntegerField": (int,),
    "SmallIntegerField": (int,),
    "PositiveIntegerField": (int,),
    "PositiveBigIntegerField": (int,),
    "PositiveSmallIntegerField": (int,),
    "BooleanField": (bool,),
}


@cache
def _written(model, auto_pk: bool) -> list:
    """The fields an INSERT of `model` writes: every concrete one but generated columns
    and, when the database assigns it (`auto_pk`), the auto-incremented id."""
    pk = _auto_pk(model) if auto_pk else None
    return [f for f in model._meta.concrete_fields if not f.generated and f is not pk]


def _auto_pk(model):
    pk = model._meta.pk
    return pk if isinstance(pk, models.AutoField | models.BigAutoField | models.SmallAutoField) else None


def update(model: type[models.Model], where: dict, values: dict) -> int:
    """UPDATE the rows of `model` matching the conjunction `where` (equalities) with
    `values` (fields by attname; not auto_now: pass the time). Returns how many rows."""
    sql = _update_sql(model, tuple(values), tuple(where), connection.vendor)
    fields = _fields(model)
    params = [fields[a].get_db_prep_save(v, connection) for a, v in values.items()]
    params += _prep_all(model, where)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def update_then_insert(model: type[models.Model], pk, values: dict, instance: models.Model) -> int:
    """update() of the one row of `model` whose primary key is `pk`, then insert() of
    `instance` (a new row of any model) only if that row was there: on PostgreSQL one
    statement, a data-modifying WITH (one round trip where there were two); elsewhere the
    two statements. For a row's change and the record of it, which always go together.
    Returns how many rows were updated (1, or 0: nothing inserted either)."""
    if connection.vendor != "postgresql":
        updated = update(model, {model._meta.pk.attname: pk}, values)
        if updated:
            insert(instance)
        return updated
    other = type(instance)
    auto_pk = _auto_pk(other) if instance.pk is None else None
    written = _written(other, auto_pk is not None)
    sql = _update_then_insert_sql(model, tuple(values), other, auto_pk is not None)
    fields = _fields(model)
    params = [fields[a].get_db_prep_save(v, connection) for a, v in values.items()]
    params += _prep(model, model._meta.pk.attname, [pk])
    params += [f.get_db_prep_save(f.pre_save(instance, add=True), connection) for f in written]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return 0
    if auto_pk is not None:
        instance.pk = row[0]
    instance._state.adding, instance._state.db = False, connection.alias
    return 1


@lru_cache(maxsize=64)
def _update_then_insert_sql(model, assigned: tuple, other, auto_pk: bool) -> str:
    quote = connection.ops.quote_name
    written = _written(other, auto_pk)
    # Typed placeholders: in a SELECT list PostgreSQL would take an untyped one for text.
    casts = ", ".join(f"CAST(%s AS {f.cast_db_type(connection)})" for f in written)
    returned = quote(_auto_pk(other).column) if auto_pk else "1"
    update_sql = _update_sql(model, assigned, (model._meta.pk.attname,), connection.vendor)
    return (
        f"WITH updated AS ({update_sql} RETURNING 1) "
        f"INSERT INTO {quote(other._meta.db_table)} ({', '.join(quote(f.column) for f in written)}) "
        f"SELECT {casts} FROM updated RETURNING {returned}"
    )


def _prep_all(model, conjunction: dict) -> list:
    return [p for attname, value in conjunction.items() for p in _prep(model, attname, [value])]


@cache
def _insert_sql(model, auto_pk: bool, ignore_conflicts: bool, vendor: str, count: int = 1) -> str:
    quote = connection.ops.quote_name
    pk = _auto_pk(model) if auto_pk else None
    columns = [quote(f.column) for f in _written(model, auto_pk)]
    placeholders = ", ".join([f"({', '.join(['%s'] * len(columns))})"] * count)
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(columns)}) VALUES {placeholders}"
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if pk is not None and connection.features.can_return_columns_from_insert:
        sql += f" RETURNING {quote(pk.column)}"
    return sql


@lru_cache(maxsize=256)
def _update_sql(model, assigned: tuple, matched: tuple, vendor: str) -> str:
    quote = connection.ops.quote_name
    fields = _fields(model)
    sets = ", ".join(f"{quote(fields[a].column)} = %s" for a in assigned)
    conditions = " AND ".join(f"{quote(fields[a].column)} = %s" for a in matched)
    return f"UPDATE {quote(model._meta.db_table)} SET {sets} WHERE {conditions}"
