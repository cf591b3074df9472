"""Train: launch one run or the paper's grid as background processes or on a SLURM cluster, and follow runs live."""

from dataclasses import replace
from pathlib import Path

import streamlit as st

from app_pages import team
from app_pages.train_runs import follow_runs
from app_pages.widgets import code, md, run_page
from wildvision import catalog, model_card, runs
from wildvision.data import DataFolderError
from wildvision.models import ARCHITECTURES, WeightsError, architecture, imagenet_cache_file, imagenet_weights_problem, weights_file_problem
from wildvision.shared import demo_data, local_weights_file, shared_folder
from wildvision.slurm import SCRIPT, SlurmError, SlurmSettings, batch_script, extra_options, read_task
from wildvision.training.config import DEEP_COMPRESSION_WEIGHTS, REGIMES, TrainConfig, grid_weights, suggested_lr, table_s5
from wildvision.training.launch import (
    PAPER_GRID,
    WEIGHTS_EXAMPLE,
    accelerator,
    grid_name,
    launch_grid,
    launch_run,
    load_grid,
    page_path,
    parse_named_folders,
    parse_weights,
    select_grid,
)
from wildvision.wording import CLASS_FOLDERS, LOCAL_WEIGHTS, error_text

LOCAL = LOCAL_WEIGHTS  # wording.HINTS' page words name this choice
NOTHING_STARTED = "Nothing was started."


def demo_defaults() -> tuple[Path | None, str]:
    """The demo training folder and its test sets as NAME=FOLDER lines, where the fields start (None, "" without ../shared)."""
    demo_train = demo_data("train")
    tests = {name: demo_data(name) for name in ("test_out_pet", "test_out_nopet")}
    return demo_train, "\n".join(f"{name}={folder}" for name, folder in tests.items() if folder) if demo_train else ""


def enter_data() -> str:
    return f"Enter the training folder: the folder that holds one sub-folder per class ({CLASS_FOLDERS})" + (
        "." if demo_data("train") else f". The demo data is not on this machine (looked in {shared_folder() / 'demo-data'})."
    )


def data_inputs(key: str) -> tuple[str, str]:
    demo_train, default_tests = demo_defaults()
    data = st.text_input(
        f"Training folder (one sub-folder per class: {CLASS_FOLDERS})",
        str(demo_train or ""),
        key=f"{key}_data",
        placeholder="/path/to/train",
    )
    tests = st.text_area(
        "Out-of-distribution test sets, one per line as NAME=FOLDER", default_tests, key=f"{key}_tests", placeholder="test_out_pet=/path/to/test_out_pet"
    )
    return data, tests


def table_s5_summary() -> str:
    parts = []
    for regime in REGIMES:
        phases = table_s5(regime)
        if len(phases) == 1:
            parts.append(f"{regime}: batch {phases[0].batch_size}, learning rate {phases[0].lr:g}, patience {phases[0].patience}")
        else:
            parts.append(f"combi: {phases[0].epochs} head-only epochs as transfer, then all layers as scratch")
    return "; ".join(parts)


def device_choices() -> list[str]:
    return ["auto", "cpu", "cuda"] if accelerator() else ["auto", "cpu"]


def hyperparameter_inputs(key: str, regime: str | None = None, lr: float | None = None, lr_reason: str = "") -> dict:
    """The run's hyperparameters. With a regime, each field starts at the value the run will use (Table S5's, the
    suggested learning rate); combi's per-phase values and the grid's per-configuration ones show greyed in empty fields,
    which keep them. Only values that differ from Table S5 are passed on as overrides."""
    phases = table_s5(regime) if regime else None
    single = phases[0] if phases and len(phases) == 1 else None
    if single:
        st.caption(
            f"Filled in with what the run will use: Table S5's values for the {regime} regime (batch {single.batch_size}, learning rate "
            f"{single.lr:g}, patience {single.patience})" + (f", except the learning rate: {lr_reason}." if lr != single.lr else ".")
        )
        shown = {"batch": single.batch_size, "patience": single.patience}
        hint = {"batch": None, "patience": None, "lr": None}
    elif phases:
        st.caption(
            f"Empty fields keep Table S5's values for each of combi's phases, shown greyed: the first {phases[0].epochs} epochs train "
            "the head only, as transfer, the rest all layers, as scratch" + (f"; learning rate: {lr_reason}." if lr is not None else ".")
        )
        shown = {"batch": None, "patience": None}
        hint = {
            "batch": f"{phases[0].batch_size}, then {phases[1].batch_size}",
            "patience": f"none, then {phases[1].patience}",
            "lr": f"{phases[0].lr:g}, then {phases[1].lr:g}",
        }
    else:
        deep_lr = suggested_lr("squeezenet1_0", "transfer", DEEP_COMPRESSION_WEIGHTS)[0]
        st.caption(
            f"Empty fields: each configuration uses its regime's Table S5 values ({table_s5_summary()}), except SqueezeNet "
            f"from the shipped deep-compression weights file ({DEEP_COMPRESSION_WEIGHTS}), which trains at learning rate {deep_lr:g}: "
            "its activations are tens of times larger. A value entered here applies to every configuration."
        )
        shown = {"batch": None, "patience": None}
        hint = {"batch": "Table S5", "patience": "Table S5", "lr": "suggested"}
    suffix = f"_{regime}" if regime else ""
    c = st.columns(7)
    chosen = {
        "epochs": c[0].number_input("Most epochs", 1, 1000, 200, key=f"{key}_epochs"),
        "patience": c[1].number_input(
            "Patience",
            1,
            500,
            shown["patience"],
            key=f"{key}_patience{suffix}",
            placeholder=hint["patience"],
            help="Epochs without a lower test_in loss before early stopping.",
        ),
        "batch_size": c[2].number_input("Batch size", 1, 1024, shown["batch"], key=f"{key}_batch{suffix}", placeholder=hint["batch"]),
        "lr": c[3].number_input("Learning rate", 0.00001, 1.0, lr, step=0.0001, format="%.5f", key=f"{key}_lr{suffix}_{lr}", placeholder=hint["lr"]),
        "seed": c[4].number_input("Seed", 0, 2**31 - 1, 0, key=f"{key}_seed"),
        "device": c[5].selectbox("Device", device_choices(), key=f"{key}_device"),
        "feature_views": c[6].number_input(
            "Stored views",
            0,
            50,
            TrainConfig.feature_views,
            key=f"{key}_views",
            help="Head-only epochs (transfer, and combi's first epochs) train on this many augmented views per image, "
            "whose backbone outputs are computed once and reused: much faster. 0 runs the whole network every epoch.",
        ),
    }
    c = st.columns([1, 1])
    chosen["calibrate_on"] = (
        c[0]
        .text_input(
            "Choose the flagging line on test set",
            key=f"{key}_calibrate",
            placeholder="test_in, never below 0.5",
            help="Leave empty: the line is the lowest score reaching the target precision on test_in, but never below 0.5 "
            "(test_in is easy, and a lower line flags many everyday photos). Or name one of the test sets above, labelled "
            "photos like the ones the model will check: the line is chosen there, with no floor, and that set's numbers become optimistic.",
        )
        .strip()
        or None
    )
    chosen["exclude_test_duplicates"] = c[1].checkbox(
        "Leave out test photos that copy a training photo",
        key=f"{key}_exclude_copies",
        help="Test photos that are the same photo as a training photo (exact or near copies) are always reported; "
        "ticked, they are also left out of that test set's numbers.",
    )
    if single:  # the value Table S5 gives is recorded as "Table S5" (None), as the command line records it
        for name, default in (("patience", single.patience), ("batch_size", single.batch_size), ("lr", single.lr)):
            if chosen[name] == default:
                chosen[name] = None
    return chosen


def lr_override(arch: str, regime: str, weights: str | None) -> float | None:
    """The suggested learning rate where it differs from Table S5's (else None: Table S5)."""
    lr, _ = suggested_lr(arch, regime, weights)
    phases = table_s5(regime)
    return None if lr is None or (len(phases) == 1 and lr == phases[0].lr) else lr


def launch(action) -> None:
    """Run a launch action and turn the expected problems into one clear message."""
    try:
        with st.spinner("Checking the folders and starting the run in the background…"):
            started = action()
    except (DataFolderError, WeightsError, runs.RunError, ValueError, OSError, SlurmError) as error:
        st.error(md(error_text(error, "page")))
        return
    st.session_state["train_notices"] = []
    task = read_task(started[0])
    if task is None:
        st.success(f"Started {len(started)} run(s): {', '.join(p.name for p in started)}. Follow them below.")
        return
    st.success(
        f"Submitted SLURM job {task['job_id']}: {len(started)} task(s), one per run. Follow them below; "
        f"the batch script and Slurm's output per task are in {code(task['submission'])}."
    )
    st.code((Path(task["submission"]) / SCRIPT).read_text(encoding="utf-8"), language="bash")


def replaced_input() -> str | None:
    """The finished run this one is meant to replace, if any: it is scored on the same test sets, as the default model is."""
    finished = {record.key: str(record.path) for record in catalog.usable_models(runs.default_runs_dir()) if not record.is_default}
    chosen = st.selectbox(
        "Meant to replace",
        ["no run (compared with the default model only)", *finished],
        key="one_replaces",
        help="When it finishes, the new run is shown beside the default model, and beside the run chosen here, on the same test sets.",
    )
    return finished.get(chosen)


def slurm_inputs() -> SlurmSettings:
    """The job array's settings; the runs folder must be on a filesystem that the cluster's nodes share."""
    c = st.columns(3)
    partition = c[0].text_input("Partition", key="slurm_partition", help="Empty: the cluster's default partition.")
    account = c[1].text_input("Account", key="slurm_account", help="Empty: your default account.")
    time_limit = c[2].text_input(
        "Time limit per task",
        key="slurm_time",
        placeholder="1-00:00:00",
        help="MINUTES, HH:MM:SS or DAYS-HH:MM:SS; a run stopped by it is cancelled cleanly and can be resumed. Empty: the partition's limit.",
    )
    c = st.columns(3)
    gpus = c[0].number_input("GPUs per task", 0, 16, 1, key="slurm_gpus")
    cpus = c[1].number_input("CPUs per task", 0, 256, 0, key="slurm_cpus", help="0: the cluster's default. Image-loading workers use them.")
    memory = c[2].text_input("Memory per task", key="slurm_memory", placeholder="32G", help="Empty: the cluster's default.")
    extra = st.text_area("More #SBATCH options, one per line", key="slurm_extra", placeholder="--qos=short\n--constraint=a100")
    return SlurmSettings(
        partition=partition.strip() or None,
        account=account.strip() or None,
        time_limit=time_limit.strip() or None,
        gpus_per_task=gpus,
        cpus_per_task=cpus or None,
        memory=memory.strip() or None,
        extra=extra_options(extra.splitlines()),
    )


def imagenet_unavailable(reason: str, remedy: str) -> str:
    return f"{md(reason)}. {remedy}, or connect this machine to the internet once: the weights are then kept in the torch cache. {NOTHING_STARTED}"


def weights_inputs(arch: str, regime: str) -> tuple[str | None, str | None]:
    """(weights for TrainConfig: 'imagenet', a file or None for scratch; the local file as entered, None if ImageNet).

    The choice starts at the local file shipped for the architecture where there is one (they work offline);
    both widgets are keyed by the architecture, so choosing another starts at that architecture's default."""
    if regime == "scratch":
        st.caption("Scratch trains all layers from random initialisation: no pretrained weights.")
        return None, None
    shipped = local_weights_file(arch)
    packaged = architecture(arch).weights
    imagenet = f"ImageNet (from the {packaged.package} package)" if packaged else "ImageNet (downloaded by torchvision)"
    choice = st.radio("Pretrained weights", [imagenet, LOCAL], index=1 if shipped else 0, horizontal=True, key=f"one_weights_{arch}")
    # No help icon: its label would make "Local weights file" name two elements for people's browser scripts.
    path = st.text_input("Local weights file", str(shipped or ""), key=f"one_weights_path_{arch}", placeholder=f"/path/to/{arch}-imagenet.pth")
    if choice == LOCAL:
        return str(Path(path.strip()).expanduser().resolve()) if path.strip() else "", path
    if packaged is None:
        cached = imagenet_cache_file(arch)
        if cached.is_file():
            st.caption(f"torchvision's ImageNet weights for {arch} are in the torch cache: {code(cached)}.")
        else:
            st.caption(
                f"torchvision's ImageNet weights for {arch} are not in the torch cache yet: starting a run downloads them, which needs "
                "internet (checked when you start it)." + (f" This machine has a local file for {arch}: {code(shipped)}." if shipped else "")
            )
    return "imagenet", None


def weights_problem_one(arch: str, weights: str | None, path: str | None) -> str | None:
    """Why the chosen weights cannot start a run, worded for this page; None if they can."""
    if weights is None:
        return None
    if weights == "imagenet":
        reason = imagenet_weights_problem(arch)
        shipped = local_weights_file(arch)
        remedy = (
            f"Choose '{LOCAL}' under Pretrained weights: this machine has one for {arch} ({code(shipped)})"
            if shipped
            else f"Choose '{LOCAL}' under Pretrained weights and enter an ImageNet state dict of the stock {arch}"
        )
        return imagenet_unavailable(reason, remedy) if reason else None
    if not weights:
        return f"Enter the local weights file (an ImageNet state dict of the stock {arch}), or choose ImageNet weights. {NOTHING_STARTED}"
    reason = weights_file_problem(arch, weights)
    return f"{md(reason)}. Enter an ImageNet state dict of the stock {arch} under Local weights file. {NOTHING_STARTED}" if reason else None


def one_run_form() -> None:
    """One run: architecture, regime, data and options, started in the background as the person's job."""
    c = st.columns(3)
    # The default model's architecture: what the Review page's export names, and the model a new run is compared with
    arch = c[0].selectbox("Architecture", ARCHITECTURES, index=ARCHITECTURES.index(model_card.ARCH), key="one_arch")
    regime = c[1].selectbox(
        "Regime", REGIMES, key="one_regime", help="transfer: last layer only; scratch: all layers from random init; combi: last layer, then all layers"
    )
    with_background = c[2].checkbox("With background images (data_bg)", value=True, key="one_background")
    weights, weights_path = weights_inputs(arch, regime)
    lr, lr_reason = suggested_lr(arch, regime, weights if weights not in (None, "imagenet") else None)
    with st.form("one_run"):
        data, tests = data_inputs("one")
        replaces = replaced_input()
        options = hyperparameter_inputs("one", regime, lr, lr_reason)
        start = st.form_submit_button("Start training", type="primary")
    if start:
        try:  # every typed path through the data roots first, before anything is said of what it holds
            checked = (page_path(data), parse_named_folders(tests, within_roots=True)) if data.strip() else None
            weights = page_path(weights_path) if weights_path and weights_path.strip() and weights not in (None, "imagenet") else weights
            problem = (enter_data() + " " + NOTHING_STARTED) if checked is None else weights_problem_one(arch, weights, weights_path)
        except ValueError as error:  # roots.OutsideRoots, or a malformed NAME=FOLDER line
            problem = f"{md(str(error).rstrip('.'))}. {NOTHING_STARTED}"
        if problem:
            st.error(problem)
        else:
            launch(
                lambda: [
                    launch_run(
                        TrainConfig(
                            arch=arch,
                            regime=regime,
                            data=checked[0],
                            with_background=with_background,
                            weights=weights,
                            tests=checked[1],
                            replaces=replaces,
                            **options,
                        ),
                        runs.default_runs_dir(),
                    )
                ]
            )


def grid_form() -> None:
    """The paper's grid, in turn on this machine or as a SLURM job array, as the person's job."""
    with st.form("grid"):
        entries = load_grid(PAPER_GRID)
        st.write(
            f"The paper's {len(entries)} configurations (Tables S1-S3), trained one after another in one background process "
            "on this machine, or as one SLURM job array with a task per configuration, run as the cluster has room."
        )
        data, tests = data_inputs("grid")
        names = st.multiselect("Configurations", [grid_name(e) for e in entries], default=[grid_name(e) for e in entries], key="grid_names")
        shipped_lines = [f"{arch}={path}" for arch in dict.fromkeys(e["arch"] for e in entries) if (path := local_weights_file(arch))]
        weights_lines = st.text_area(
            "Local weights per architecture, one per line as ARCH=FILE; architectures not listed use ImageNet weights from torchvision",
            "\n".join(shipped_lines),
            key="grid_weights",
            placeholder=WEIGHTS_EXAMPLE,
        )
        options = hyperparameter_inputs("grid")
        backend = st.radio(
            "Where to train",
            ["This machine", "A SLURM cluster"],
            horizontal=True,
            key="grid_backend",
            help="A SLURM cluster: submitted with sbatch from this machine, which must be a login node of the cluster "
            f"with the runs folder (`{runs.default_runs_dir()}`) on the filesystem its nodes share.",
        )
        with st.expander("SLURM settings"):
            settings_error = None
            try:
                settings = slurm_inputs()
            except ValueError as error:
                settings, settings_error = None, str(error)
        show_script = st.form_submit_button("Show the SLURM batch script")
        if st.form_submit_button("Start the grid", type="primary") or show_script:
            chosen = select_grid(entries, names) if names else []
            on_slurm = backend == "A SLURM cluster" or show_script

            def grid_problem() -> str | None:
                """Why the grid cannot start, worded for this page; None if it can (weights checked before any run folder exists)."""
                if not data.strip():
                    return enter_data() + " " + NOTHING_STARTED
                page_path(data), parse_named_folders(tests, within_roots=True)  # refused (ValueError) outside the data roots
                weights = parse_weights(weights_lines.splitlines(), within_roots=True)
                pretrained = {e["arch"]: grid_weights(weights, e["arch"], e["regime"]) for e in chosen if e["regime"] != "scratch"}
                for arch, arch_weights in pretrained.items():
                    if arch_weights == "none":
                        return f"Only scratch trains from random initialisation: give {arch} a weights file or imagenet under Local weights per architecture. {NOTHING_STARTED}"
                    if arch_weights not in (None, "imagenet") and (reason := weights_file_problem(arch, arch_weights)):
                        return f"{md(reason)}. Correct the line for {arch} under Local weights per architecture. {NOTHING_STARTED}"
                downloads = [arch for arch, arch_weights in pretrained.items() if arch_weights in (None, "imagenet")]
                reason = imagenet_weights_problem(downloads) if downloads else None
                return (
                    None
                    if reason is None
                    else imagenet_unavailable(
                        reason,
                        "Give a local ImageNet state dict for each of them under Local weights per architecture (ARCH=FILE), leave those configurations out",
                    )
                )

            def start_grid() -> list[Path]:
                weights = parse_weights(weights_lines.splitlines(), within_roots=True)
                configs = [
                    TrainConfig.from_grid_entry(e, data=page_path(data), weights=weights, tests=parse_named_folders(tests, within_roots=True), **options)
                    for e in chosen
                ]
                # An empty learning rate field: each configuration's suggested rate (0.0001 for SqueezeNet's deep-compression file)
                configs = [c if c.lr else replace(c, lr=lr_override(c.arch, c.regime, c.weights)) for c in configs]
                return launch_grid(configs, runs.default_runs_dir(), settings if on_slurm else None, owner=team.person().identity)

            if on_slurm and settings_error:
                st.error(settings_error)
            elif show_script and chosen:
                st.caption(
                    f"The batch script for {len(chosen)} configuration(s); task i trains the i-th of: "
                    + ", ".join(f"{i}: {grid_name(e)}" for i, e in enumerate(chosen))
                    + ". Nothing was submitted."
                )
                st.code(batch_script(len(chosen), settings), language="bash")
            elif not chosen:
                st.error("Choose at least one configuration.")
            else:
                try:
                    problem = grid_problem()
                except ValueError as error:  # a malformed weights line, or a path outside the data roots
                    problem = f"{md(str(error).rstrip('.'))}. {NOTHING_STARTED}"
                if problem:
                    st.error(problem)
                else:
                    launch(start_grid)


def page() -> None:
    st.title("Train")
    gpu = accelerator()
    if gpu:
        st.success(f"Training will use the GPU: {gpu}.")
    else:
        st.warning("No GPU on this machine: training runs on the CPU. Expect minutes per epoch for SqueezeNet and hours for VGG.")
    st.caption(
        "Runs start as separate processes: closing this tab or restarting the dashboard does not stop them. "
        f"Each run writes a folder under `{runs.default_runs_dir()}`."
    )

    if team.allowed("train"):
        one_run, grid = st.tabs(["One run", "The paper's grid"])
        with one_run:
            one_run_form()
        with grid:
            grid_form()
    follow_runs()


run_page(page, "Train")
