"""Train: launch one run or the paper's grid as background processes or on a SLURM cluster, and follow runs live."""

from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from app_pages.widgets import md
from wildvision import runs
from wildvision.data import DataFolderError
from wildvision.launch import (
    PAPER_GRID,
    accelerator,
    cancel_run,
    grid_name,
    launch_grid,
    launch_run,
    load_grid,
    list_runs_shown,
    log_tail,
    parse_named_folders,
    progress,
    resume_run,
    select_grid,
)
from wildvision.models import ARCHITECTURES, WeightsError
from wildvision.slurm import SCRIPT, SlurmError, SlurmSettings, batch_script, extra_options, read_task
from wildvision.train import REGIMES, TrainConfig

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEMO_TRAIN = SHARED / "demo-data" / "train"
ACTIVE = ("running", "queued")

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

default_data = str(DEMO_TRAIN) if DEMO_TRAIN.is_dir() else ""
default_tests = (
    f"test_out_pet={SHARED / 'demo-data' / 'test_out_pet'}\ntest_out_nopet={SHARED / 'demo-data' / 'test_out_nopet'}"
    if DEMO_TRAIN.is_dir() else ""
)


def data_inputs(key: str) -> tuple[str, str]:
    data = st.text_input("Training folder (one sub-folder per class: captive/, wild/, optional background/)", default_data, key=f"{key}_data")
    tests = st.text_area("Out-of-distribution test sets, one per line as NAME=FOLDER", default_tests, key=f"{key}_tests")
    return data, tests


def hyperparameter_inputs(key: str) -> dict:
    st.caption("0 keeps the paper's Table S5 value for that regime.")
    c = st.columns(7)
    return {
        "epochs": c[0].number_input("Most epochs", 1, 1000, 200, key=f"{key}_epochs"),
        "patience": c[1].number_input("Patience", 0, 500, 0, key=f"{key}_patience") or None,
        "batch_size": c[2].number_input("Batch size", 0, 1024, 0, key=f"{key}_batch") or None,
        "lr": c[3].number_input("Learning rate", 0.0, 1.0, 0.0, format="%.5f", key=f"{key}_lr") or None,
        "seed": c[4].number_input("Seed", 0, 2**31 - 1, 0, key=f"{key}_seed"),
        "device": c[5].selectbox("Device", ["auto", "cpu", "cuda"], key=f"{key}_device"),
        "feature_views": c[6].number_input(
            "Stored views", 0, 50, TrainConfig.feature_views, key=f"{key}_views",
            help="Head-only epochs (transfer, and combi's first epochs) train on this many augmented views per image, "
                 "whose backbone outputs are computed once and reused: much faster. 0 runs the whole network every epoch.",
        ),
    }


def launch(action) -> None:
    """Run a launch action and turn the expected problems into one clear message."""
    try:
        started = action()
    except (DataFolderError, WeightsError, runs.RunError, ValueError, OSError, SlurmError) as error:
        st.error(str(error))
        return
    task = read_task(started[0])
    if task is None:
        st.success(f"Started {len(started)} run(s): {', '.join(p.name for p in started)}. Follow them below.")
        return
    st.success(f"Submitted SLURM job {task['job_id']}: {len(started)} task(s), one per run. Follow them below; "
               f"the batch script and Slurm's output per task are in `{task['submission']}`.")
    st.code((Path(task["submission"]) / SCRIPT).read_text(encoding="utf-8"), language="bash")


def slurm_inputs() -> SlurmSettings:
    """The job array's settings; the runs folder must be on a filesystem that the cluster's nodes share."""
    c = st.columns(3)
    partition = c[0].text_input("Partition", key="slurm_partition", help="Empty: the cluster's default partition.")
    account = c[1].text_input("Account", key="slurm_account", help="Empty: your default account.")
    time_limit = c[2].text_input("Time limit per task", key="slurm_time", placeholder="1-00:00:00",
                                 help="MINUTES, HH:MM:SS or DAYS-HH:MM:SS; a run stopped by it is cancelled cleanly and can be resumed. "
                                      "Empty: the partition's limit.")
    c = st.columns(3)
    gpus = c[0].number_input("GPUs per task", 0, 16, 1, key="slurm_gpus")
    cpus = c[1].number_input("CPUs per task", 0, 256, 0, key="slurm_cpus", help="0: the cluster's default. Image-loading workers use them.")
    memory = c[2].text_input("Memory per task", key="slurm_memory", placeholder="32G", help="Empty: the cluster's default.")
    extra = st.text_area("More #SBATCH options, one per line", key="slurm_extra", placeholder="--qos=short\n--constraint=a100")
    return SlurmSettings(partition=partition.strip() or None, account=account.strip() or None, time_limit=time_limit.strip() or None,
                         gpus_per_task=gpus, cpus_per_task=cpus or None, memory=memory.strip() or None,
                         extra=extra_options(extra.splitlines()))


one_run, grid = st.tabs(["One run", "The paper's grid"])
with one_run, st.form("one_run"):
    data, tests = data_inputs("one")
    c = st.columns(3)
    arch = c[0].selectbox("Architecture", ARCHITECTURES, index=ARCHITECTURES.index("squeezenet1_0"))
    regime = c[1].selectbox("Regime", REGIMES, help="transfer: last layer only; scratch: all layers from random init; combi: last layer, then all layers")
    with_background = c[2].checkbox("With background images (data_bg)", value=True)
    weights_choice = st.radio("Pretrained weights", ["ImageNet (downloaded by torchvision)", "A local state dict file"], horizontal=True,
                              help="Ignored for scratch, which starts from random init.")
    weights_path = st.text_input("Local weights file", str(SHARED / "weights" / "squeezenet1_0-imagenet-deepcompression.pth"))
    options = hyperparameter_inputs("one")
    if st.form_submit_button("Start training", type="primary"):
        weights = None if regime == "scratch" else ("imagenet" if weights_choice.startswith("ImageNet") else str(Path(weights_path).expanduser().resolve()))
        launch(lambda: [launch_run(
            TrainConfig(arch=arch, regime=regime, data=str(Path(data).expanduser().resolve()), with_background=with_background,
                        weights=weights, tests=parse_named_folders(tests), **options),
            runs.default_runs_dir(),
        )])

with grid, st.form("grid"):
    entries = load_grid(PAPER_GRID)
    st.write(f"The paper's {len(entries)} configurations (Tables S1-S3), trained one after another in one background process "
             "on this machine, or as one SLURM job array with a task per configuration, run as the cluster has room.")
    data, tests = data_inputs("grid")
    names = st.multiselect("Configurations", [grid_name(e) for e in entries], default=[grid_name(e) for e in entries])
    weights_lines = st.text_area(
        "Local weights per architecture, one per line as ARCH=FILE; architectures not listed use ImageNet weights from torchvision",
        f"squeezenet1_0={SHARED / 'weights' / 'squeezenet1_0-imagenet-deepcompression.pth'}" if DEMO_TRAIN.is_dir() else "",
    )
    options = hyperparameter_inputs("grid")
    backend = st.radio("Where to train", ["This machine", "A SLURM cluster"], horizontal=True, key="grid_backend",
                       help="A SLURM cluster: submitted with sbatch from this machine, which must be a login node of the cluster "
                            f"with the runs folder (`{runs.default_runs_dir()}`) on the filesystem its nodes share.")
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

        def start_grid() -> list[Path]:
            weights = parse_named_folders(weights_lines)
            if not chosen:
                raise ValueError("choose at least one configuration")
            return launch_grid([
                TrainConfig(arch=e["arch"], regime=e["regime"], data=str(Path(data).expanduser().resolve()), with_background=e["background"],
                            weights=None if e["regime"] == "scratch" else weights.get(e["arch"]), tests=parse_named_folders(tests), **options)
                for e in chosen
            ], runs.default_runs_dir(), settings if on_slurm else None)
        if on_slurm and settings_error:
            st.error(settings_error)
        elif show_script and chosen:
            st.caption(f"The batch script for {len(chosen)} configuration(s); task i trains the i-th of: "
                       + ", ".join(f"{i}: {grid_name(e)}" for i, e in enumerate(chosen)) + ". Nothing was submitted.")
            st.code(batch_script(len(chosen), settings), language="bash")
        elif show_script:
            st.error("choose at least one configuration")
        else:
            launch(start_grid)


def curves(run_dir: Path) -> go.Figure | None:
    rows = runs.read_metrics(run_dir)
    if not rows:
        return None
    epochs = [r["epoch"] for r in rows]
    figure = go.Figure()
    figure.add_scatter(x=epochs, y=[r["train_loss"] for r in rows], name="train loss")
    figure.add_scatter(x=epochs, y=[r["val_loss"] for r in rows], name="test_in loss")
    figure.add_scatter(x=epochs, y=[r["val_f_score"] for r in rows], name="test_in F", yaxis="y2")
    figure.update_layout(height=260, margin=dict(l=10, r=10, t=30, b=10), xaxis_title="epoch", yaxis_title="cross-entropy",
                         yaxis2=dict(title="F", overlaying="y", side="right", range=[0, 1]), legend=dict(orientation="h"))
    return figure


def minutes(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds / 60:.1f} min"


def action_button(label: str, run_dir: Path, action) -> None:
    if st.button(label, key=f"{label}_{run_dir.name}"):
        try:
            action(run_dir)
            st.toast(f"{label}: {run_dir.name}")
        except (runs.RunError, OSError, SlurmError) as error:
            st.error(str(error))


def run_details(run: runs.RunSummary, slurm_note: str | None) -> None:
    train = run.config["train"]
    if slurm_note:
        task = read_task(run.path)
        st.caption(f"{slurm_note}; batch script and Slurm's output in `{task['submission']}`")
    p = progress(run)
    if run.state in ACTIVE:
        done = p.epoch + p.epoch_fraction
        st.progress(min(1.0, done / p.max_epochs),
                    text=f"{run.state}: {p.epoch} of at most {p.max_epochs} epochs done; {minutes(p.seconds_per_epoch)} per epoch; "
                         f"at most {minutes(p.seconds_left_at_most)} left (early stopping usually ends it sooner)")
    st.caption(f"{train['arch']}, {train['regime']}, {'with' if train['with_background'] else 'without'} background; data: {train['data']}")
    if run.status.get("message"):
        (st.info if run.state in ACTIVE else st.warning)(md(run.status["message"]))
    for warning in run.config.get("warnings", []):
        st.warning(md(warning))
    figure = curves(run.path)
    if figure:
        st.plotly_chart(figure, key=f"curves_{run.name}")
    st.code(log_tail(run.path) or "(no log yet)", language=None)
    if run.state in ACTIVE:
        action_button("Cancel", run.path, cancel_run)
    elif run.state in ("failed", "cancelled", runs.INTERRUPTED):
        action_button("Resume", run.path, resume_run)


@st.fragment(run_every=3)
def live_runs() -> None:
    summaries, notes, slurm_problem = list_runs_shown(runs.default_runs_dir())
    st.subheader("Runs")
    if not summaries:
        st.info("No runs yet. Start one above; it will appear here and update by itself.")
        return
    if slurm_problem:
        st.warning(md(slurm_problem))
    active = [run for run in summaries if run.state in ACTIVE]
    for run in active:
        with st.expander(f"{run.name}: **{run.state}**" + (f" · {notes[run.name]}" if run.name in notes else ""), expanded=True):
            run_details(run, notes.get(run.name))
    finished = [run for run in summaries if run.state not in ACTIVE]
    if finished:
        st.dataframe(
            [{"run": r.name, "state": r.state, **({"SLURM": notes.get(r.name, "")} if notes else {}), "architecture": r.config["train"]["arch"],
              "regime": r.config["train"]["regime"], "dataset": "bg" if r.config["train"]["with_background"] else "no_bg", "epochs": r.epoch,
              "message": r.status.get("message") or ""}
             for r in finished],
            hide_index=True,
        )
        chosen = st.selectbox("Look at a finished run", [r.name for r in finished], key="finished_run")
        run_details(next(r for r in finished if r.name == chosen), notes.get(chosen))


live_runs()
