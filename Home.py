"""wildvision dashboard: `streamlit run Home.py`. Navigation over the pages in app_pages/, and the home page.

The pages live in app_pages/, not pages/: with a pages/ folder beside this file, Streamlit runs a deep
link (e.g. /predict) on a freshly started server in its old multipage mode, without this navigation."""

from collections import Counter

import streamlit as st

from app_pages import team
from app_pages.study_deck import deck_section
from app_pages.widgets import run_page
from wildvision import catalog, model_card, runs
from wildvision.training.launch import accelerator, list_runs_shown

st.set_page_config(page_title="wildvision", page_icon=":mag:", layout="wide")

PAGES = {
    "data": st.Page("app_pages/data.py", title="Data", icon=":material/dataset:"),
    "train": st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    "results": st.Page("app_pages/results.py", title="Results grid", icon=":material/table_chart:"),
    "efficiency": st.Page("app_pages/efficiency.py", title="Efficiency", icon=":material/speed:"),
    "generalisation": st.Page("app_pages/generalisation.py", title="Generalisation", icon=":material/travel_explore:"),
    "predict": st.Page("app_pages/predict.py", title="Predict", icon=":material/image_search:"),
    "review": st.Page("app_pages/review.py", title="Review", icon=":material/fact_check:"),
    "explanations": st.Page("app_pages/explanations.py", title="Explanations", icon=":material/visibility:"),
}


def home_page() -> None:
    st.title("wildvision")
    st.write(
        "wildvision flags photos of live wild animals kept captive or offered for sale, to help find online "
        "wildlife trade. It trains and compares the image classifiers of Kulkarni & Di Minin (2022) and "
        "explains each prediction with a saliency map."
    )
    summaries, _, slurm_problem = list_runs_shown(runs.default_runs_dir())
    states = Counter(run.state for run in summaries)
    columns = st.columns(4)
    columns[0].metric("Completed runs", states.get("completed", 0))
    columns[1].metric("Running or queued", states.get("running", 0) + states.get("queued", 0))
    columns[2].metric("Failed, cancelled or interrupted", states.get("failed", 0) + states.get("cancelled", 0) + states.get(runs.INTERRUPTED, 0))
    gpu = accelerator()
    columns[3].metric("Training device", "GPU" if gpu else "CPU")
    st.caption(f"GPU: {gpu}." if gpu else "No GPU on this machine: training runs on the CPU, which is slow for the larger models.")
    if slurm_problem:
        st.caption(slurm_problem)
    if not summaries:
        st.info(f"No training runs in `{runs.default_runs_dir()}` yet. Start one on the Train page; the analysis pages already show the paper's results.")

    default = catalog.default_model()
    if default is not None:
        st.subheader("The default model")
        st.write(
            f"Ready on every install, offline: {default.arch} trained on the demo proxy data (pets in listing "
            f"photos stand in for captive wild animals). {default.trust[0]} "
            "The Predict page uses it unless you pick one of your runs."
        )
        with st.expander("Model card"):
            st.markdown(model_card.card_markdown(model_card.load_card()))

    st.subheader("For a presentation")
    deck_section()

    st.subheader("Where to go")
    links = {
        "predict": "Upload photos and see how likely each shows an animal captive or for sale, with what the model looked at.",
        "review": "Screen a whole folder of photos in the background, check the flagged ones, and export the confirmed cases.",
        "data": "Check a dataset before training: classes, sample photos, duplicates and photos filed under two classes.",
        "train": "Launch one training run or the paper's 24-model grid, and follow runs live.",
        "results": "The paper's results and your runs side by side, exportable as CSV and LaTeX.",
        "efficiency": "How much each extra parameter buys over SqueezeNet.",
        "generalisation": "How performance drops out of distribution, and the positive-class precision.",
        "explanations": "Galleries of what a model looked at in its surest right and wrong answers, for a slide (the paper's Figs 4 and 5).",
    }
    for key, text in links.items():
        st.page_link(PAGES[key], label=f"**{PAGES[key].title}**: {text}", icon=PAGES[key].icon)


def home() -> None:
    run_page(home_page, "Home")


if not team.gate():
    st.stop()
st.navigation([st.Page(home, title="Home", icon=":material/home:", default=True), *PAGES.values()]).run()
