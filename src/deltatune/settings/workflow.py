"""From the workflow's config to what each rule reads of it, written once.

:class:`WorkflowSettings` validates a config into the settings dataclasses once, while Snakemake
parses the workflow (defaults filled in, ``extends`` resolved, the search drawn), and gives each
rule exactly the settings its output depends on; ``workflow/rules/common.smk`` passes them to
the ``deltatune`` commands through ``params:``. Snakemake reruns a job when its params change,
so what a rule is given decides what reruns it:

* resolved settings, not the keys as written: writing a default out changes nothing;
* only what the rule reads: its own obs columns (the others as null), and of a section only the
  keys its step reads (``ceiling_splits`` is how many ceiling jobs run, which no step reads);
* no run-only setting (``checkpoint_every`` of pretraining and each stage; ``compute``'s threads
  and accelerator): they reach the rules as ``threads:`` and ``resources:``, which rerun nothing.

The report is given the effective config (:meth:`WorkflowSettings.effective`), every setting
that shapes a result, to record; so it reruns on any of them. ``tests/test_rerun.py`` changes one
config key at a time and checks, by dry run over a finished run, that exactly the rules below
rerun. Only the standard library is imported: Snakemake reads this while it parses the workflow.
"""

from __future__ import annotations

from typing import Any

from ..errors import SettingsError
from ..metrics import MATCHED_SUFFIX
from ..roles import BASE_ROW, TUNED_ROW
from .base import from_mapping, output_dict, to_dict
from .compute import ComputeSettings, ContainerSettings
from .data import Columns, PreprocessSettings, ScreenSpec, screen_files
from .evaluate import PROFILES_WITHOUT_DE, EvaluateSettings
from .model import Architecture, CheckpointSettings, PerturbationSettings
from .pairing import STRATEGY_COLUMNS
from .predict import InferenceSettings
from .report import BootstrapSettings
from .search import SearchSettings, trials, with_overrides
from .train import StageSettings, TrainSettings

# The obs columns (besides perturbation and control) each rule reads; a few depend on settings
# (:meth:`WorkflowSettings.columns_for`). The other columns reach the rule as null.
COLUMNS_READ = {
    "check_obs": ("cell_type", "batch", "drug", "dose"),  # checks every configured column
    "preprocess": ("cell_type", "drug"),  # the target line, and the split unit
    "pretrain": ("cell_type", "batch"),  # cell sets share perturbation, line and plate
    "finetune": ("cell_type", "batch"),
    "infer": ("cell_type", "batch"),
    "reference": ("batch",),  # a reference per plate
    "evaluate": ("batch",),  # plate-matched scores
    "ceiling": ("batch",),
}
# The evaluation section's keys each scoring rule reads (ceiling_splits: the number of ceiling jobs).
EVALUATION_READ = {"evaluate": ("profile", "cell_cap", "control_cap", "seed"), "ceiling": ("profile",)}
OTHER_LINES = "baseline_other_lines"  # the one baseline that reads the cell line column


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override`` laid over it, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_stages(stages: dict[str, dict]) -> dict[str, dict]:
    """Each stage's keys with its ``extends`` chain merged in (a stage overrides its parent)."""
    if BASE_ROW in stages:
        raise SettingsError(f"stages: '{BASE_ROW}' is reserved for the untuned base model")

    def resolve(name: str, seen: list[str]) -> dict:
        if name in seen:
            raise SettingsError(f"stages: 'extends' cycle through {' -> '.join(seen + [name])}")
        stage = dict(stages[name])
        parent = stage.pop("extends", None)
        if parent is None:
            return stage
        if parent not in stages:
            raise SettingsError(f"stages.{name}.extends: unknown stage '{parent}'")
        return deep_merge(resolve(parent, seen + [name]), stage)

    resolved = {name: resolve(name, []) for name in stages}
    for name, stage in resolved.items():
        if "pairing" not in stage:
            raise SettingsError(f"stages.{name}.pairing: set it (random, batch, celltype or batch_celltype)")
    return resolved


def replicate_seed(seed: int, replicate: int) -> int:
    """The seed of replicate ``replicate`` of a step whose configured seed is ``seed``."""
    return seed + replicate


def _check_override(stage: StageSettings, stage_name: str, name: str, value: Any) -> StageSettings:
    """``stage`` with the searched setting ``name`` at ``value``: a misspelled path or a value of
    the wrong type stops the workflow while it is parsed, not inside every trial job."""
    try:
        return from_mapping(StageSettings, with_overrides(to_dict(stage), {name: value}), f"stages.{stage_name}")
    except SettingsError as err:
        raise SettingsError(f"search.parameters.{name}: {value!r} does not fit stage '{stage_name}': {err}") from None


def _columns_read(rule: str, stage: TrainSettings | None = None) -> tuple[str, ...]:
    """The columns of :data:`COLUMNS_READ` for ``rule``, with those a training ``stage``'s settings add."""
    names = COLUMNS_READ[rule]
    if stage is not None:
        interpolates = isinstance(stage, StageSettings) and stage.dose_interpolation.points > 0
        names += ("drug",) if stage.loss.diversity > 0 or interpolates else ()
        names += ("dose",) if interpolates else ()
    return names


def _only(settings: dict, keys: tuple[str, ...]) -> dict:
    return {k: settings[k] for k in keys}


# Settings added after result folders were made, by their path in a rule's settings, with the
# value that does what the code did before them: left out of a rule's params while they have it,
# so that those folders do not rerun for a key they never had.
LATER_KEYS = {
    ("keep_cells",): None,
    ("full_groups",): [],
    ("lora", "use_dora"): False,
    ("loss", "plate_adversarial"): 0.0,
    ("loss", "plate_adversary_lr_scale"): 10.0,
}


def _without_old_defaults(settings: dict) -> dict:
    """``settings`` (a rule's, as JSON-ready dicts) without the later keys that keep the old behaviour."""
    kept = dict(settings)
    for path, old in LATER_KEYS.items():
        *parents, leaf = path
        node = kept
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                break
            node[key] = dict(child)  # a copy: the caller's dict is left as it was
            node = node[key]
        else:
            if leaf in node and node[leaf] == old:
                del node[leaf]
    return kept


class WorkflowSettings:
    """A validated workflow config, resolved once, and the settings each rule reads of it.

    The attributes are the settings dataclasses of every section (``None`` where a section does
    not apply: no ``screen`` for a user's file, no ``architecture`` or ``pretrain`` with a
    checkpoint, no ``search`` without one); the methods give what a rule reads of them, as
    JSON-able mappings.
    """

    def __init__(self, config: dict):
        data, model = config["data"], config["base_model"]
        self.config = config
        self.run: str = config["run"]
        self.replicates: int = config.get("replicates", 1)
        self.baselines: list[str] = list(config.get("baselines", []))
        self.screen_files: list[str] | None = screen_files(data.get("path"))
        self.checkpoint_dir: str | None = model.get("checkpoint")
        self.columns = from_mapping(Columns, data["columns"], "data.columns")
        self.screen = None if self.screen_files else from_mapping(ScreenSpec, data.get("simulate"), "data.simulate")
        self.preprocess = from_mapping(
            PreprocessSettings,
            {
                "target_cell_line": data["target_cell_line"],
                "var_names": data.get("var_names"),
                **config.get("preprocess", {}),
            },
            "preprocess",
        )
        given = {k: model[k] for k in ("checkpoint_file", "genes", "trusted") if model.get(k) is not None}
        self.checkpoint = from_mapping(CheckpointSettings, given if self.checkpoint_dir else {}, "base_model")
        self.perturbations = from_mapping(
            PerturbationSettings,
            {
                "unseen_perturbations": model.get("unseen_perturbations", "error"),
                "combination_separator": data.get("combination_separator"),
            },
            "base_model",
        )
        own_base = not self.checkpoint_dir
        self.architecture = self.pretrain = None
        if own_base:
            self.architecture = from_mapping(Architecture, model.get("architecture"), "base_model.architecture")
            self.pretrain = from_mapping(TrainSettings, model.get("pretrain"), "base_model.pretrain")
        stages = resolve_stages(config["stages"])
        self.stages = {name: from_mapping(StageSettings, s, f"stages.{name}") for name, s in stages.items()}
        self.search = self._search(config.get("search"))
        if self.search is not None:  # the winner, retrained: the start stage with the chosen values laid over it
            self.stages[TUNED_ROW] = self.stages[self.search.start]
        self.trial_values = trials(self.search) if self.search else []
        self.trials = [self._trial(values) for values in self.trial_values]
        self.inference = from_mapping(InferenceSettings, config.get("inference"), "inference")
        self.evaluation = from_mapping(EvaluateSettings, config.get("evaluation"), "evaluation")
        self.bootstrap = from_mapping(BootstrapSettings, config.get("report", {}).get("bootstrap"), "report.bootstrap")
        self.compute = from_mapping(ComputeSettings, config.get("compute"), "compute")
        self.container = from_mapping(ContainerSettings, config.get("container"), "container")
        parents = {name: stage.get("extends") or BASE_ROW for name, stage in config["stages"].items()}
        self.parents = parents if self.search is None else {**parents, TUNED_ROW: self.search.start}
        self._check_pairings()

    def _search(self, values: dict | None) -> SearchSettings | None:
        """The config's ``search``: its start must be a stage, ``tuned`` free, every searched path a
        stage setting (checked with the range's ends, or each listed value)."""
        if not values:
            return None
        search = from_mapping(SearchSettings, values, "search")
        if search.metric.endswith(MATCHED_SUFFIX) and not self.columns.batch:
            raise SettingsError(
                f"search.metric '{search.metric}' is scored against each plate's controls, but "
                "data.columns.batch is null: choose a pooled score"
            )
        if search.start not in self.stages:
            raise SettingsError(f"search.start: unknown stage '{search.start}' (stages: {sorted(self.stages)})")
        if TUNED_ROW in self.stages:
            raise SettingsError(
                f"stages: '{TUNED_ROW}' is reserved for the search's winner when the config has a search"
            )
        for name, space in search.parameters.items():
            if name == "pairing":
                raise SettingsError(
                    "search.parameters.pairing: the pairing strategy cannot be searched (its control index is an "
                    "input of every trial and of the winner's stage); give each strategy a stage of its own"
                )
            for value in space["values"] if "values" in space else (space["low"], space["high"]):
                _check_override(self.stages[search.start], search.start, name, value)
        return search

    def _trial(self, values: dict[str, Any]) -> StageSettings:
        """A trial's stage: the start stage (its first replicate's seed) with the trial's values;
        a value drawn from a range can still be of the wrong type (a float rank)."""
        stage = self.stages[self.search.start]
        for name, value in values.items():
            stage = _check_override(stage, self.search.start, name, value)
        return stage

    def _check_pairings(self) -> None:
        """Stop before any job when a pairing, or the plate adversary, needs the batch column and
        the data has none, or the adversary would get control means that carry no plate."""
        trained = {f"stages.{n}": s for n, s in self.stages.items()}
        if self.pretrain is not None:
            trained["base_model.pretrain"] = self.pretrain
        needs_batch = sorted(k for k, s in trained.items() if s.pairing.startswith("batch"))
        if needs_batch and not self.columns.batch:
            raise SettingsError(
                f"{', '.join(needs_batch)} pair controls by batch, but data.columns.batch is null: "
                "name the plate / batch column (public benchmark files often have `dataset`), "
                "or set their pairing to celltype or random"
            )
        adversarial = {k: s for k, s in trained.items() if s.loss.plate_adversarial}
        if adversarial and not self.columns.batch:
            raise SettingsError(
                f"{', '.join(sorted(adversarial))}: loss.plate_adversarial reads each control's plate, but "
                "data.columns.batch is null: name the plate / batch column, or set the weight to 0"
            )
        plateless = sorted(
            k for k, s in adversarial.items() if s.control_input == "mean" and not s.pairing.startswith("batch")
        )
        if plateless:
            raise SettingsError(
                f"{', '.join(plateless)}: loss.plate_adversarial with control_input: mean needs a pairing by "
                "batch (batch or batch_celltype), whose control means each come from one plate"
            )

    # What each rule reads.

    def columns_for(self, rule: str, stage: TrainSettings | None = None) -> dict:
        """The obs columns rule ``rule`` reads (:data:`COLUMNS_READ`), the others null.

        A training ``stage`` reads the drug column only for the diversity reward or dose
        interpolation, and the dose column only for dose interpolation.
        """
        names = _columns_read(rule, stage)
        if rule == "preprocess" and self.preprocess.base_cells_per_group is not None:
            names += ("batch",)  # the base lines are sampled per (line, perturbation, plate)
        if rule == "preprocess" and self.columns.dose_from_label:
            names += ("dose",)  # written there, parsed from the labels
        return to_dict(self.columns.only(names))

    def stage_columns(self, stage: str) -> dict:
        """The columns fine-tuning ``stage`` reads. ``tuned`` trains with the search's chosen values,
        known only once the search has run: it reads what any trial reads."""
        candidates = [self.stages[stage], *(self.trials if stage == TUNED_ROW else [])]
        names = {name for candidate in candidates for name in _columns_read("finetune", candidate)}
        return to_dict(self.columns.only(tuple(sorted(names))))

    def pair_columns(self, strategy: str) -> dict:
        """The columns a pairing strategy groups controls by."""
        return to_dict(self.columns.only(STRATEGY_COLUMNS[strategy]))

    def baseline_columns(self, kind: str) -> dict:
        """The other-lines baseline reads the cell line column; the others only tell controls apart."""
        return to_dict(self.columns.only(("cell_type",) if kind == OTHER_LINES else ()))

    def check_obs_settings(self) -> dict:
        """The lines the obs check looks for (:class:`PreprocessSettings` fields)."""
        read = ("target_cell_line", "base_cell_lines", "keep_cells")
        return _without_old_defaults(_only(to_dict(self.preprocess), read))

    def preprocess_settings(self) -> dict:
        """Preprocessing's settings; ``n_top_genes`` only without a checkpoint (whose genes replace
        the selection), ``max_missing_genes`` only with one; of the split, the lists or the TOML
        of a fixed split, else the fractions (``split.seed`` is read either way: it seeds the
        base lines' sample)."""
        unread = "n_top_genes" if self.checkpoint_dir else "max_missing_genes"
        settings = {k: v for k, v in to_dict(self.preprocess).items() if k != unread}
        drawn = ("val_fraction", "test_fraction", "dose_holdout_fraction")
        split_unread = drawn if self.preprocess.split.fixed else ("test", "val", "toml")
        settings["split"] = {k: v for k, v in settings["split"].items() if k not in split_unread}
        return _without_old_defaults(settings)

    def pretrain_settings(self) -> dict:
        """Pretraining's resolved settings, without its run-only ones."""
        return _without_old_defaults(output_dict(self.pretrain))

    def stage_settings(self, stage: str, replicate: int) -> dict:
        """A stage's resolved settings for one replicate, without its run-only ones."""
        settings = _without_old_defaults(output_dict(self.stages[stage]))
        return {**settings, "seed": replicate_seed(settings["seed"], replicate)}

    def inference_settings(self, replicate: int) -> dict:
        inference = to_dict(self.inference)
        return {**inference, "seed": replicate_seed(inference["seed"], replicate)}

    def evaluation_settings(self, rule: str) -> dict:
        """The keys of the evaluation section ``rule`` (evaluate or ceiling) reads; the ceiling reads
        the caps of the cell sample only for a profile with DE metrics."""
        keys = EVALUATION_READ[rule]
        if rule == "ceiling" and self.evaluation.profile not in PROFILES_WITHOUT_DE:
            keys += ("cell_cap", "control_cap", "seed")
        return _only(to_dict(self.evaluation), keys)

    def trial_settings(self, trial: int) -> dict:
        """A search trial's stage settings (the start stage's first replicate, with the trial's values)."""
        return _without_old_defaults(output_dict(self.trials[trial]))

    def trial_columns(self, trial: int) -> dict:
        """A search trial runs finetune, infer and evaluate: it reads what the three read (infer and
        evaluate read no column that finetune does not)."""
        return self.columns_for("finetune", stage=self.trials[trial])

    # Run-only settings, for ``threads:`` and ``resources:``.

    def checkpoint_every(self, stage: str | None = None, trial: int | None = None) -> int:
        """Steps between resumable checkpoints of a stage, a search trial, or (neither given)
        pretraining."""
        if trial is not None:
            return self.trials[trial].checkpoint_every
        return (self.pretrain if stage is None else self.stages[stage]).checkpoint_every

    # The record of a run.

    def effective(self) -> dict:
        """Every setting that shapes a result, defaults filled in and ``extends`` resolved, as a
        config this workflow accepts: what ``provenance.json`` records. Run-only settings are left
        out: they change no result."""
        data = {
            "path": self.config["data"].get("path"),
            "columns": to_dict(self.columns),
            "target_cell_line": self.preprocess.target_cell_line,
            "var_names": self.preprocess.var_names,
            "combination_separator": self.perturbations.combination_separator,
        }
        if self.screen is not None:
            data["simulate"] = to_dict(self.screen)
        preprocess = _without_old_defaults(
            {k: v for k, v in to_dict(self.preprocess).items() if k not in ("target_cell_line", "var_names")}
        )
        base_model = {
            "checkpoint": self.checkpoint_dir,
            "unseen_perturbations": self.perturbations.unseen_perturbations,
        }
        if self.checkpoint_dir:
            base_model |= to_dict(self.checkpoint)
        else:
            base_model |= {"architecture": to_dict(self.architecture), "pretrain": self.pretrain_settings()}
        return {
            "run": self.run,
            "data": data,
            "preprocess": preprocess,
            "base_model": base_model,
            "stages": {
                name: _without_old_defaults(output_dict(stage))
                for name, stage in self.stages.items()
                if name != TUNED_ROW
            },
            "search": None if self.search is None else to_dict(self.search),
            "replicates": self.replicates,
            "baselines": self.baselines,
            "inference": to_dict(self.inference),
            "evaluation": to_dict(self.evaluation),
            "report": {"bootstrap": to_dict(self.bootstrap)},
        }


def seeds(effective: dict) -> dict:
    """Every seed of a run (of :meth:`WorkflowSettings.effective`), replicate offsets applied."""
    reps = range(effective["replicates"])
    simulated = effective["data"].get("simulate")  # none for a user's screen
    pretrain = effective["base_model"].get("pretrain")  # none with a checkpoint
    return {
        "simulate": simulated["seed"] if simulated else None,
        "split": effective["preprocess"]["split"]["seed"],
        "pretrain": pretrain["seed"] if pretrain else None,
        "stages": {name: [replicate_seed(s["seed"], r) for r in reps] for name, s in effective["stages"].items()},
        "inference": [replicate_seed(effective["inference"]["seed"], r) for r in reps],
        "bootstrap": effective["report"]["bootstrap"]["seed"],
    }
