"""Typed lot and migration configuration, validated at DAG parse time.

A malformed file fails with the file and the key named, e.g.
``config/lots/02_contacts.yaml: entities.contacts.dedupe.threshold: Input should be
less than or equal to 1``. Only yaml and pydantic are imported here, so the DAG
factory stays fast to parse.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from crm_migration.model.settings import REPO_ROOT, ConfigError, Strict, config_dir, format_error, read_yaml
from crm_migration.model.spec import EntityOrder, spec

LOT_ID_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
# The entities of config/entities/*.yaml, parents first (derived from their references).
ENTITIES = EntityOrder()


class ObsoleteRules(Strict):
    soft_deleted: bool = Field(True, description="Exclude rows flagged deleted in the legacy CRM.")
    not_modified_for_years: float | None = Field(
        None, gt=0, description="Exclude rows whose last change is older than this many years."
    )


TRANSFORMS = ("raw", "fold", "company", "digits", "soundex", "metaphone", "nysiis", "initial", "first_token",
              "soundex_tail", "first_token_metaphone", "email_local",
              "house_key")


class FieldComparison(Strict):
    """One field of the pair score: similarity in [0, 1] after a transform, with a weight."""

    field: str
    compare: Literal["exact", "any", "jaro_winkler", "levenshtein", "damerau_levenshtein", "tokens", "address",
                     "name", "email", "date"] = Field(
        "jaro_winkler", description="tokens: a name whose words are all in the other's counts (Katsu / Restaurant"
                                    " Katsu); address: the house numbers must agree, then the rest is compared;"
                                    " name: a person's name part (typos, an initial, swapped_with the other part);"
                                    " email: every address of the row (one shared, the same local part, one typo);"
                                    " date: a day and month swapped or one digit mistyped is still close.")
    transform: Literal["raw", "fold", "company", "digits"] = "fold"
    weight: float = Field(1.0, gt=0)
    must_agree: bool = Field(False, description="Present on both sides and clearly different (similarity < 0.7):"
                             " never merged, whatever the other fields say (two companies at one address), and"
                             " no cluster keeps two such rows linked through others (two birth dates).")
    must_agree_unless: str | None = Field(None, description="must_agree: no veto when this other field is the"
                                          " same (equal, or one value's words all in the other's): one company"
                                          " at two addresses under one name is one customer; two sites under"
                                          " two names are two.")
    one_per_cluster: bool = Field(False, description="A cluster never holds two rows with clearly different values"
                                  " of it (two e-mails chained through namesakes): it splits at its weakest links;"
                                  " a pair of rows may still disagree on it.")
    swapped_with: str | None = Field(None, description="name: the other name part (first / last name keyed in the"
                                     " wrong order agree crosswise).")


class DedupeRules(Strict):
    enabled: bool = True
    method: Literal["weighted", "probabilistic"] = Field(
        "weighted", description="weighted: the fields' weighted mean similarity against threshold; probabilistic:"
                                " Fellegi-Sunter weights learned from the lot's rows (Splink), match_probability.")
    match_probability: float = Field(0.9, gt=0.5, lt=1.0, description="probabilistic: merge at or above.")
    review_probability: float = Field(0.5, gt=0.0, lt=1.0, description="probabilistic: review at or above.")
    threshold: float = Field(0.92, ge=0.5, le=1.0, description="Pair score at or above which rows merge.")
    review_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Pairs scoring in [review_threshold, threshold) go to stg.review_pair."
    )
    partitions: int | None = Field(
        None, ge=1, le=256, description="probabilistic: the lot's pairs are scored in this many partitions, one"
                                        " mapped task each (default: one per 500,000 rows times blocking keys).")
    max_cluster_size: int = Field(20, ge=2, description="Larger clusters are left unmerged (likely a bad key).")
    missing_similarity: float = Field(0.5, ge=0, le=1, description="Similarity of a field empty on either side.")
    blocking: tuple[tuple[str, ...], ...] | None = Field(
        None, description="Blocking keys, each a list of field:transform parts; rows sharing a key are compared."
    )
    fields: tuple[FieldComparison, ...] | None = Field(None, description="Weighted field comparisons.")
    survivor: Literal["most_recent", "most_complete", "oldest"] = "most_recent"
    survivorship: dict[str, Literal["most_recent", "most_complete", "longest", "earliest"]] = Field(
        default_factory=dict,
        description="Per-field rule (value of the most recent / most complete row with one, the longest value,"
                    " the earliest value); fields not named take the survivor's value, gaps filled.",
    )

    preset: str | None = Field(
        None, description="A matching preset of config/matching_presets.yaml (company, person, deal, ...): its"
                          " blocking and fields, unless this lot names its own.")

    @model_validator(mode="before")
    @classmethod
    def _from_preset(cls, data):
        if isinstance(data, dict) and data.get("preset"):
            presets = matching_presets()
            if data["preset"] not in presets:
                raise ValueError(f"preset: unknown matching preset {data['preset']!r}; known: {sorted(presets)}"
                                 f" ({presets_file()})")
            data = {**presets[data["preset"]], **{k: v for k, v in data.items() if v is not None}}
        return data

    @field_validator("blocking")
    @classmethod
    def _blocking_parts(cls, v):
        for key in v or ():
            for part in key:
                field, _, transform = part.partition(":")
                if not field or (transform or "fold") not in TRANSFORMS:
                    raise ValueError(f"blocking part {part!r}: use field:transform, transform in {list(TRANSFORMS)}")
        return v

    @model_validator(mode="after")
    def _swapped_with_a_field(self) -> DedupeRules:
        names = [f.field for f in self.fields or ()]
        for f in self.fields or ():
            for key in ("swapped_with", "must_agree_unless"):
                if getattr(f, key) is not None and getattr(f, key) not in names:
                    raise ValueError(f"fields: {f.field}'s {key} {getattr(f, key)!r} is not a compared field"
                                     f" ({names})")
        return self

    @model_validator(mode="after")
    def _review_below_threshold(self) -> DedupeRules:
        if self.review_threshold is not None and self.review_threshold >= self.threshold:
            raise ValueError("review_threshold must be below threshold")
        if self.review_probability >= self.match_probability:
            raise ValueError("review_probability must be below match_probability")
        return self


def presets_file() -> Path:
    """config/matching_presets.yaml of the configuration in use, else the one shipped with the repository."""
    own = config_dir() / "matching_presets.yaml"
    return own if own.exists() else REPO_ROOT / "config" / "matching_presets.yaml"


def matching_presets() -> dict[str, dict]:
    """Name -> {blocking, fields} of every matching preset (how a kind of record is matched)."""
    path = presets_file()
    return _presets(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _presets(path: str, stamp: int) -> dict[str, dict]:  # stamp: a changed file is read again
    data = read_yaml(Path(path))
    for name, preset in data.items():
        if not isinstance(preset, dict) or set(preset) - {"blocking", "fields"}:
            raise ConfigError(f"{path}: {name}: a preset holds blocking and fields only")
    return data


_COLUMN_REF = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"


class ChangeDetection(Strict):
    """How the delta sync finds changed rows of an entity."""

    columns: tuple[str, ...] | None = Field(
        None, description="Modification-time columns of the extract query (main table and joined tables, e.g."
                          " c.date_modified, e.date_modified); a row is a candidate when any is inside the window."
                          " Default: <alias>.date_modified of the main table.")
    compare_hashes: bool = Field(
        False, description="Also compare every in-scope row's hash with the version migrated: for joined tables"
                           " without modification dates (or hard-deleted link rows). Reads the whole scope.")

    @field_validator("columns")
    @classmethod
    def _column_refs(cls, v):
        for c in v or ():
            if not re.match(_COLUMN_REF, c):
                raise ValueError(f"{c!r} is not a column reference (alias.column)")
        return v


EditPolicy = Literal["flag", "legacy_wins", "target_wins"]


class EntityConfig(Strict):
    source_filter: str = Field("1=1", description="SQL predicate on the legacy table, e.g. a country.")
    change_detection: ChangeDetection = ChangeDetection()
    default_region: str = Field("FR", pattern=r"^[A-Z]{2}$", description="Region for phones without +prefix.")
    required: tuple[str, ...] = ()
    obsolete: ObsoleteRules = ObsoleteRules()
    dedupe: DedupeRules = DedupeRules()
    value_maps: dict[str, dict[str, str | None]] = Field(
        default_factory=dict, description="Picklist maps: field -> legacy value -> target value."
    )
    on_orphan_fk: Literal["quarantine", "null"] = "quarantine"
    defaults: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Target column -> value used when the mapped value is empty."
    )
    on_target_edit: EditPolicy = Field(
        "flag", description="A target row edited in the new CRM since the migration wrote it, when the legacy row"
        " changes again: flag (keep the new CRM's values, list the conflict; the freeze says NO-GO until it is"
        " settled), target_wins (keep them, counted), legacy_wins (overwrite them, counted).")
    on_target_edit_columns: dict[str, EditPolicy] = Field(
        default_factory=dict, description="Target column -> its own edit policy (overrides on_target_edit).")

    def edit_policy(self, column: str) -> str:
        return self.on_target_edit_columns.get(column, self.on_target_edit)

    @field_validator("source_filter")
    @classmethod
    def _one_predicate(cls, v: str) -> str:
        if ";" in v or "--" in v:
            raise ValueError("must be a single SQL predicate (no ';' or '--')")
        return v


class LotConfig(Strict):
    lot_id: str = Field(pattern=LOT_ID_PATTERN)
    description: str
    owner: str = "crm-migration"
    entities: dict[str, EntityConfig]
    depends_on: tuple[str, ...] = ()
    load_chunk_rows: int = Field(20_000, ge=100, le=1_000_000)
    load_workers: int = Field(2, ge=1, le=16, description="Chunks loaded at once, each in its own transaction.")
    schedule: str | None = None

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, v: dict[str, EntityConfig]) -> dict[str, EntityConfig]:
        if not v:
            raise ValueError("a lot needs at least one entity")
        unknown = sorted(set(v) - set(ENTITIES))
        if unknown:
            raise ValueError(f"unknown entity {unknown}; known: {list(ENTITIES)}")
        return v

    @model_validator(mode="after")
    def _defaults_name_target_columns(self) -> LotConfig:
        for entity, cfg in self.entities.items():
            columns = set(spec(entity).target_columns)
            unknown = sorted(set(cfg.defaults) - columns | set(cfg.defaults) & {"id", "legacy_id"})
            if unknown:
                raise ValueError(f"entities.{entity}.defaults: {unknown} are not target columns one may default"
                                 f" (choose from {sorted(columns - {'id', 'legacy_id'})})")
            unknown = sorted(set(cfg.on_target_edit_columns) - columns)
            if unknown:
                raise ValueError(f"entities.{entity}.on_target_edit_columns: {unknown} are not target columns"
                                 f" (choose from {sorted(columns - {'id', 'legacy_id'})})")
        return self

    @model_validator(mode="after")
    def _entity_order(self) -> LotConfig:
        # Entities run parents first (the order of their references), so FKs remap through loaded parents.
        object.__setattr__(self, "entities", {e: self.entities[e] for e in ENTITIES if e in self.entities})
        return self


def load_lot(path: Path) -> LotConfig:
    try:
        return LotConfig.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(format_error(path, exc)) from None


def load_lots(lots_dir: Path | None = None) -> list[LotConfig]:
    """All lots, in file-name order, with cross-lot checks (unique ids, known dependencies)."""
    lots_dir = lots_dir or config_dir() / "lots"
    paths = sorted(lots_dir.glob("*.yaml"))
    lots = [load_lot(p) for p in paths]
    seen: dict[str, Path] = {}
    for path, lot in zip(paths, lots, strict=True):
        if lot.lot_id in seen:
            raise ConfigError(f"{path}: lot_id: '{lot.lot_id}' already used by {seen[lot.lot_id]}")
        for dep in lot.depends_on:
            if dep not in seen:
                raise ConfigError(f"{path}: depends_on: unknown or later lot '{dep}'")
        seen[lot.lot_id] = path
    return lots


def entity_scopes(entity: str, lots: list[LotConfig] | None = None) -> dict[str, str]:
    """Scope (the lot that owns the rows) -> source_filter, for every lot that migrates entity:
    phased lots of one entity each keep their own watermark, and the delta covers their union."""
    return {lot.lot_id: lot.entities[entity].source_filter for lot in (lots or load_lots()) if entity in lot.entities}


_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_.:+\-]{1,250}$")


def validate_key(lot_id: str, run_id: str) -> None:
    """Lot and run ids are pasted into Soda filters as text: accept only safe characters."""
    if not re.match(LOT_ID_PATTERN, lot_id):
        raise ValueError(f"invalid lot id {lot_id!r}: must match {LOT_ID_PATTERN}")
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"invalid run id {run_id!r}: only letters, digits and _.:+- are allowed")
