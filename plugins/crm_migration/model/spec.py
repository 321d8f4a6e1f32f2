"""The migration's data model as configuration: one ``config/entities/<entity>.yaml`` per entity.

An entity spec names its extract query, the legacy table and key, and its **fields**: the clean name
each legacy column gets, the kind that selects its cleanse rule, and the target column it lands in
(references to other entities included). Everything per entity derives from it: the cleanse, the
transform, the staging and target DDL, the upsert, the crosswalk view, the delta's candidate look-up,
rollback, and the parent-before-child order (from the references). Adding a field is an edit of the
entity file and of the extract SQL; no Python.

Only yaml and pydantic here (imported while DAG files parse).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crm_migration.model.settings import ConfigError, config_dir, load_migration_config, read_yaml

_IDENT = r"^[a-z_][a-z0-9_]{0,62}$"
_COLUMN_REF = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"

# kind -> (cleanse rule, column type in staging, column type in the target)
KINDS: dict[str, tuple[str, str]] = {
    "text": ("text", "text"),
    "name": ("text", "text"),          # a person's name part: capitalised when all upper or all lower
    "email": ("text", "text"),         # validated (EMAIL_INVALID) and normalised
    "phone": ("text", "text"),         # E.164 when possible, with the row's country or default_region
    "country": ("text", "char(2)"),    # ISO 3166-1 alpha-2 (COUNTRY_UNKNOWN)
    "date": ("date", "date"),
    "datetime": ("timestamptz", "timestamptz"),
    "number": ("double precision", "numeric"),     # non-negative, finite (AMOUNT_INVALID)
    "money": ("numeric", "numeric(18, 2)"),        # non-negative, finite (AMOUNT_INVALID)
    "bool": ("boolean", "boolean"),
    "picklist": ("text", "text"),      # mapped by the lot's value_maps.<field> at transform (UNMAPPED_VALUE)
    "domain": ("text", "text"),        # the host of a website, without www.
    "id": ("text", "text"),            # an opaque legacy key: never trimmed
    "reference": ("text", "uuid"),     # a legacy id of another entity, remapped through the crosswalk
}


class SpecError(ValueError):
    """An entity file is malformed; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LinkSpec(_Strict):
    """A reference kept in a link table, as SuiteCRM keeps a contact's company in ``accounts_contacts``:
    the parent is the ``value`` column of the live link rows whose ``key`` column is the row's id (several
    live links: the one ``choose`` picks, the same on every read; a ``relations`` entry keeps them all). A
    link added, changed or soft-deleted (``modified`` moves) is a change of the row for the delta sync; a
    link row deleted outright is seen by the parent the row picks no longer being the one it was built from."""

    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", description="The link table.")
    key: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Its column holding this entity's id.")
    value: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Its column holding the parent's id.")
    modified: str | None = Field("date_modified", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                 description="Its modification time (none: the delta compares row hashes).")
    deleted: str | None = Field("deleted", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                description="Its soft-delete flag (0 = live); none: every row is live.")
    choose: Literal["smallest", "latest", "primary"] = Field(
        "smallest", description="Of several live links, the one the row keeps: the smallest parent id, the latest"
        " link (modified), or the one flagged primary (then the smallest); every link is kept by a relation.")
    primary: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                description="With choose: primary, its column flagging the primary link (1).")
    parent_deleted: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                       description="The parent table's soft-delete flag: a link to a parent"
                                       " soft-deleted there is dead (SuiteCRM leaves such link rows live).")
    parent_modified: str = Field("date_modified", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                 description="With parent_deleted: the parent table's modification time (a"
                                 " parent deleted since the watermark changes the row for the delta sync).")

    @model_validator(mode="after")
    def _choice_has_its_column(self) -> LinkSpec:
        if self.choose == "primary" and self.primary is None:
            raise ValueError("choose: primary needs primary (the column flagging the primary link)")
        if self.choose == "latest" and self.modified is None:
            raise ValueError("choose: latest needs modified (the link's modification time)")
        return self


class FieldSpec(_Strict):
    source: str | None = Field(None, alias="from", description="Column of the extract query (default: the field's"
                                                                " own name).")
    kind: Literal[tuple(KINDS)] = "text"  # type: ignore[valid-type]
    to: str | None = Field(None, pattern=_IDENT, description="Target column; none: kept in staging only.")
    entity: str | None = Field(None, description="For a reference: the entity it points to.")
    entities: dict[str, str] | None = Field(None, description="A polymorphic reference (activities): value of"
                                            " the type column -> entity, e.g. {Accounts: accounts}.")
    type_from: str | None = Field(None, description="Polymorphic: the extract column holding the parent's type.")
    type_to: str | None = Field(None, pattern=_IDENT, description="Polymorphic: target column for the entity name.")
    through: LinkSpec | None = Field(None, description="A reference read from a link table (SuiteCRM's"
                                     " accounts_contacts) rather than a column of the extract.")
    default: str | None = Field(None, description="A reference that is empty or unknown points to this legacy id"
                                                  " instead (a default owner); counted in the report.")
    on_missing: Literal["lot", "null"] = Field("lot", description="A reference found nowhere (nor its default):"
                                               " the lot's on_orphan_fk (lot), or left empty (null: an owner).")
    required: bool = Field(False, description="A row without it is quarantined (REQUIRED_MISSING); NOT NULL in"
                                              " the target.")
    keep_original: bool = Field(False, description="Also stage the legacy value as <field>_original.")
    invalid: Literal["quarantine", "empty"] = Field(
        "quarantine", description="A value its rule cannot read (a date '0000-00-00', a year 1800): the row is"
                                  " quarantined, or (empty: an optional detail such as a birth date) the field is"
                                  " left empty and the row goes on, counted in the cleanse's log and result.")
    values_of: str | None = Field(None, description="Every value the row has in one of the entity's relations to"
                                  " values (its e-mails), space-separated, for the dedupe to compare (compare:"
                                  " any); staged only, never a target column.")
    safe: bool = Field(False, description="Not personal data (a salutation, an activity type, a postcode): kept"
                       " as it is in rehearsals on anonymised data; every other text, name, e-mail, phone and"
                       " domain field is masked there (crm_migration.source.anonymise).")
    indexed: Literal[False, True, "lower"] = Field(False, description="Index the target column (lower: on"
                                                                      " lower(column)).")

    @model_validator(mode="after")
    def _empty_only_if_optional(self) -> FieldSpec:
        if self.invalid == "empty" and self.required:
            raise ValueError("invalid: empty on a required field: a row without it is quarantined anyway")
        return self

    @model_validator(mode="after")
    def _reference_names_entity(self) -> FieldSpec:
        named = self.entity is not None or self.entities is not None
        if (self.kind == "reference") != named or (self.entity is not None and self.entities is not None):
            raise ValueError("a field of kind reference names its entity, or its entities by type (and only"
                             " such a field does)")
        if (self.entities is None) != (self.type_from is None):
            raise ValueError("a polymorphic reference gives both entities and type_from")
        if self.default is not None and self.entities is not None:
            raise ValueError("default is for a reference to one entity")
        if self.values_of is not None and (self.to is not None or self.kind != "text"):
            raise ValueError("values_of (a relation's values) is a text field kept in staging only (no to)")
        if self.through is not None and self.entity is None:
            raise ValueError("through (a link table) is for a reference to one entity")
        return self

    @property
    def parents(self) -> tuple[str, ...]:
        if self.entities is not None:
            return tuple(dict.fromkeys(self.entities.values()))
        return (self.entity,) if self.entity else ()


class TargetSpec(_Strict):
    table: str = Field(pattern=_IDENT, description="Table in the target schema (migration.yaml target_schema).")
    manage_ddl: bool = Field(True, description="Create the table and add missing columns; false: a table the"
                                               " team does not own, checked at load start (missing columns named).")


class CandidateSpec(_Strict):
    """How the delta sync finds migrated records a new row may merge into."""

    exact: str | None = Field(None, description="Field compared exactly (an e-mail, a domain, a parent).")
    name: str | None = Field(None, description="Field compared on lower case.")
    name_part: Literal["whole", "first_token"] = "whole"


class FileSource(_Strict):
    """Exported files instead of a query: CSV (or Excel .xlsx) files matching a glob, under the directory the legacy
    connection names (``file:///exports``). A newer export of the same files feeds the delta sync."""

    path: str = Field(description="Glob relative to the legacy connection's directory, e.g. Contact*.csv.")
    format: Literal["csv", "xlsx"] = "csv"
    sheet: str | None = Field(None, description="xlsx: the sheet to read (default: the first).")
    encoding: str = "utf-8"
    delimiter: str = Field(",", min_length=1, max_length=1)
    columns: dict[str, str] = Field(default_factory=dict, description="Header -> column name: map the export's key"
                                    " to id, its modification time to date_modified, its deleted flag to deleted.")


class DerivedSource(_Strict):
    """An entity the legacy CRM has no table for, made of the distinct values of a reference column (owners
    from ``assigned_user_id`` when there is no ``users`` table): one row per value found in a live row of
    any of the tables, its id the value. A field reads the value with ``from: id``; every other field is
    empty. The delta compares the values' key set (a value no longer used anywhere is deleted)."""

    column: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="The reference column, e.g."
                        " assigned_user_id.")
    tables: list[str] = Field(min_length=1, description="The legacy tables holding it (accounts, contacts, ...).")
    deleted: str | None = Field("deleted", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                description="Their soft-delete flag (0 = live; a deleted row's value does not"
                                " count); none: every row counts.")
    always: list[str] = Field(default_factory=list, description="Values always present, used or not (the default"
                              " owner a reference's default points to, e.g. '1').")

    @field_validator("tables")
    @classmethod
    def _table_names(cls, v: list[str]) -> list[str]:
        for t in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", t):
                raise ValueError(f"{t!r} is not a table name")
        return v

    def query(self, alias: str, columns: Sequence[str]) -> str:
        """The extract: one row per distinct value; columns (the fields' sources) the value (id) or NULL."""
        live = f" AND {self.deleted} = 0" if self.deleted else ""
        parts = [f"SELECT {self.column} AS id FROM {t} WHERE {self.column} IS NOT NULL AND {self.column} <> ''{live}"
                 for t in self.tables]
        parts += ["SELECT '" + v.replace("'", "''") + "' AS id" for v in self.always]
        cols = "".join(f", {alias}.id AS {c}" if c == "id" else f", NULL AS {c}"
                       for c in dict.fromkeys(columns) if c not in ("id", "deleted"))
        return (f"SELECT {alias}.id{cols}, 0 AS deleted\nFROM (\n" + "\nUNION\n".join(parts) + f"\n) {alias}\n"
                f"WHERE ($source_filter) AND ($delta_filter)\nORDER BY {alias}.id")


class RelationTarget(_Strict):
    table: str = Field(pattern=_IDENT, description="The target link table (in the target schema).")
    key: str = Field(pattern=_IDENT, description="Its column holding this entity's target id.")
    value: str = Field(pattern=_IDENT, description="Its column holding the other entity's target id.")


class RelationSpec(_Strict):
    """A many-to-many relation the legacy CRM keeps in a link table (SuiteCRM's ``accounts_contacts``, a
    Salesforce export's ``AccountContactRelation.csv``): every live link row is migrated to a target link
    table, one row per (this row, other row) pair once merged customers are mapped to their survivor. A
    link is live when its row is not deleted and both ends are active rows of the target."""

    entity: str | None = Field(None, description="The entity at the other end (its ids are in the value column);"
                               " none: the values themselves are kept (a person's e-mails, phones).")
    table: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", description="The legacy link table"
                              " (SQL sources).")
    query: str | None = Field(None, description="Or: a SQL file (include/sql/extract/ or the config directory)"
                              " returning the key, value and flag columns (links spread over two tables).")
    file: FileSource | None = Field(None, description="Or: exported link files (CSV, XLSX) under the legacy"
                                    " connection's directory.")
    key: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Its column holding this entity's id.")
    value: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Its column holding the other's id.")
    deleted: str | None = Field("deleted", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                description="Its soft-delete flag (0, false or empty = live); none: every row lives.")
    primary: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                description="Its column flagging the primary link (1 or true): is_primary.")
    columns: dict[str, str] = Field(default_factory=dict, description="Link column -> target column (text), e.g."
                                    " {contact_role: role}.")
    kind: Literal["text", "email", "phone"] = Field("text", description="A relation to values: their rule (e-mails"
                                                    " normalised, phones in E.164 where they parse; a value the rule"
                                                    " rejects is kept as written, trimmed).")
    region_from: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="kind: phone: the"
                                    " column holding the row's country (a phone without +prefix is read in it;"
                                    " else the lot's default_region).")
    target: RelationTarget

    @model_validator(mode="after")
    def _one_source(self) -> RelationSpec:
        if sum(x is not None for x in (self.table, self.query, self.file)) != 1:
            raise ValueError("give one of table (a legacy link table), query (a SQL file) or file (exported files)")
        if self.kind != "text" and self.entity is not None:
            raise ValueError("kind is for a relation to values (no entity)")
        if self.region_from is not None and self.kind != "phone":
            raise ValueError("region_from is for kind: phone")
        for source, column in self.columns.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", source) or not re.match(_IDENT, column):
                raise ValueError(f"columns: {source!r}: {column!r} is not a column name")
        return self

    @property
    def target_columns(self) -> tuple[str, ...]:
        return (self.target.key, self.target.value, *self.columns.values(), "is_primary")


class EntitySpec(_Strict):
    entity: str = Field(pattern=_IDENT)
    description: str = ""
    extract: str | None = Field(None, description="SQL file under include/sql/extract/ (or a path relative to the"
                                " config directory) returning the fields' columns, id and date_modified.")
    file: FileSource | None = Field(None, description="Or: exported files (CSV, XLSX).")
    derived_from: DerivedSource | None = Field(None, description="Or: the distinct values of a reference column"
                                               " (an entity the legacy CRM keeps no table for).")
    alias: str = Field("t", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Alias of the main table in the"
                                                                              " extract.")
    legacy_table: str | list[str] | None = Field(None, description="Main legacy table, or the tables of a union"
                                                 " (calls, meetings, notes, tasks): their ids are listed to detect"
                                                 " hard deletes.")
    target: TargetSpec
    fields: dict[str, FieldSpec]
    candidates: CandidateSpec = CandidateSpec()
    relations: dict[str, RelationSpec] = Field(default_factory=dict, description="Many-to-many relations kept in"
                                               " link tables, by name.")

    @field_validator("fields")
    @classmethod
    def _field_names(cls, v: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
        for name in v:
            if not re.match(_IDENT, name) or name in ("legacy_id", "lot_id", "run_id"):
                raise ValueError(f"{name!r}: a field name is a lower-case identifier, not legacy_id/lot_id/run_id")
        for need in ("created_at", "modified_at"):
            if need not in v:
                raise ValueError(f"missing field {need!r} (kind datetime: the row's creation / modification time)")
        targets = [c for f in v.values() for c in (f.to, f.type_to) if c]
        dup = sorted({t for t in targets if targets.count(t) > 1} | ({"id", "legacy_id"} & set(targets)))
        if dup:
            raise ValueError(f"target columns {dup} are used twice (or reserved)")
        return v

    @field_validator("legacy_table")
    @classmethod
    def _table_names(cls, v: str | list[str] | None) -> str | list[str] | None:
        for t in [v] if isinstance(v, str) else v or []:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", t):
                raise ValueError(f"{t!r} is not a table name")
        if isinstance(v, list) and not v:
            raise ValueError("name at least one table")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> EntitySpec:
        if sum(x is not None for x in (self.extract, self.file, self.derived_from)) != 1:
            raise ValueError("give one of extract (a SQL file), file (exported files) or derived_from (the values"
                             " of a reference column)")
        if self.extract is not None and self.legacy_table is None:
            raise ValueError("legacy_table is required with extract (hard deletes are found by its ids)")
        if self.extract is None and self.links:
            raise ValueError("through (a link table) needs a SQL source; an export carries the parent's id")
        return self

    @model_validator(mode="after")
    def _candidates_are_fields(self) -> EntitySpec:
        for f in (self.candidates.exact, self.candidates.name):
            if f is not None and f not in self.fields:
                raise ValueError(f"candidates: {f!r} is not a field")
        return self

    # --- derived -----------------------------------------------------------------------------------
    def source_of(self, name: str) -> str:
        return self.fields[name].source or name

    @property
    def clean_columns(self) -> tuple[str, ...]:
        cols = ["legacy_id"]
        for name, f in self.fields.items():
            cols.append(name)
            if f.keep_original:
                cols.append(f"{name}_original")
            if f.type_from:
                cols.append(f"{name}_type")
        cols.append("defect")  # a defect the dedupe may mend by a complete twin (rules.cleanse.MATCHABLE)
        return tuple(cols)

    @property
    def target_columns(self) -> tuple[str, ...]:
        cols = ["id", "legacy_id"]
        for f in self.fields.values():
            cols += [c for c in (f.to, f.type_to) if c]
        return tuple(cols)

    @property
    def references(self) -> tuple[tuple[str, str, str | None], ...]:
        """(field, parent entity, target column), one per possible parent of a polymorphic reference."""
        return tuple((n, p, f.to) for n, f in self.fields.items() if f.kind == "reference" for p in f.parents)

    @property
    def links(self) -> tuple[tuple[str, LinkSpec], ...]:
        """(extract column, link table) of the references read through a link table."""
        return tuple((self.source_of(n), f.through) for n, f in self.fields.items() if f.through is not None)

    @property
    def legacy_tables(self) -> tuple[str, ...]:
        t = self.legacy_table
        return () if t is None else (t,) if isinstance(t, str) else tuple(t)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(n for n, f in self.fields.items() if f.required)

    @property
    def modified_column(self) -> str:
        """The target column holding the legacy modification time (newer wins)."""
        return self.fields["modified_at"].to or "updated_at"


def _format_error(path: Path, err: ValidationError) -> str:
    return "\n".join(f"{path}: {'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in err.errors())


def entities_dir(config: Path) -> Path:
    """<config>/entities, or the shipped one for a config directory that only overrides lots."""
    own = config / "entities"
    return own if own.is_dir() else Path(__file__).resolve().parents[3] / "config" / "entities"


@lru_cache(maxsize=16)
def _load(directory: str, stamp: tuple = ()) -> tuple[EntitySpec, ...]:
    """Specs of a directory; stamp (file names and modification times) renews the cache on an edit."""
    specs, paths = [], {}
    for path in sorted(Path(directory).glob("*.yaml")):
        try:
            spec = EntitySpec.model_validate(read_yaml(path))
        except ValidationError as exc:
            raise ConfigError(_format_error(path, exc)) from None
        if spec.entity in paths:
            raise ConfigError(f"{path}: entity: {spec.entity!r} already described in {paths[spec.entity]}")
        paths[spec.entity] = path
        specs.append(spec)
    if not specs:
        raise ConfigError(f"{directory}: no entity files (*.yaml)")
    by_name = {s.entity: s for s in specs}
    for s in specs:
        for field, parent, _ in s.references:
            if parent not in by_name:
                raise ConfigError(f"{paths[s.entity]}: fields.{field}.entity: unknown entity {parent!r}"
                                  f" (known: {sorted(by_name)})")
    for s in specs:
        for name, f in s.fields.items():
            rel = s.relations.get(f.values_of) if f.values_of else None
            if f.values_of and (rel is None or rel.entity is not None):
                known = sorted(n for n, r in s.relations.items() if r.entity is None)
                raise ConfigError(f"{paths[s.entity]}: fields.{name}.values_of: {f.values_of!r} is not a relation of"
                                  f" {s.entity} to values (known: {known})")
        for name, rel in s.relations.items():
            if rel.entity is not None and rel.entity not in by_name:
                raise ConfigError(f"{paths[s.entity]}: relations.{name}.entity: unknown entity {rel.entity!r}"
                                  f" (known: {sorted(by_name)})")
            if (rel.file is None) != (s.file is None):
                raise ConfigError(f"{paths[s.entity]}: relations.{name}: a link read from "
                                  f"{'a table' if rel.table else 'files'} for an entity read from "
                                  f"{'files' if s.file else 'a query'}: both come from the same source")
    return tuple(_parents_first(specs, paths))


def _parents_first(specs: list[EntitySpec], paths: dict) -> list[EntitySpec]:
    """Order entities so every referenced entity comes before the ones pointing to it (file order
    otherwise); a cycle is a configuration error."""
    done: list[EntitySpec] = []
    left = list(specs)
    while left:
        ready = [s for s in left if all(p in {d.entity for d in done} or p == s.entity for _, p, _ in s.references)]
        if not ready:
            raise ConfigError(f"{paths[left[0].entity]}: fields: the references of {[s.entity for s in left]}"
                              " form a cycle; one of them must be loaded without the reference")
        done.append(ready[0])
        left.remove(ready[0])
    return done


def parents_of(entity: str) -> tuple[str, ...]:
    """The other entities this one references (its rows point to theirs): synced before it."""
    return tuple(dict.fromkeys(p for _, p, _ in spec(entity).references if p != entity))


def specs() -> dict[str, EntitySpec]:
    """Every entity spec of the configuration in use, parents first."""
    directory = entities_dir(config_dir())
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(directory.glob("*.yaml")))
    return {s.entity: s for s in _load(str(directory), stamp)}


def spec(entity: str) -> EntitySpec:
    try:
        return specs()[entity]
    except KeyError:
        raise KeyError(f"unknown entity {entity!r}; described: {list(specs())}") from None


def target_schema() -> str:
    return load_migration_config().target_schema


class EntityOrder(Sequence):
    """The entities of the configuration in use, parents first (read at each use: tests switch configs)."""

    def __getitem__(self, i):  # noqa: ANN001 - Sequence protocol
        return tuple(specs())[i]

    def __iter__(self) -> Iterator[str]:  # one read of the specs, not one per item
        return iter(tuple(specs()))

    def __len__(self) -> int:
        return len(specs())

    def __repr__(self) -> str:
        return repr(tuple(specs()))


class PerEntity(Mapping):
    """entity -> a value derived from its spec, read at each use (``TARGET_TABLE[entity]``)."""

    def __init__(self, fn):  # noqa: ANN001
        self._fn = fn

    def __getitem__(self, entity: str):  # noqa: ANN204
        return self._fn(spec(entity))

    def __iter__(self) -> Iterator[str]:
        return iter(specs())

    def __len__(self) -> int:
        return len(specs())
