"""wildvision dashboard (placeholder until the dashboard pages land): what is on this machine."""

import streamlit as st
import torch

from wildvision import runs

st.set_page_config(page_title="wildvision", layout="wide")
st.title("wildvision")
st.write(
    "Image classifiers that flag photos of live wild animals kept captive or offered for sale, "
    "after Kulkarni & Di Minin (2022). Train models with `python -m wildvision train`; "
    "the full dashboard is under construction."
)
summaries = runs.list_runs("runs")
st.metric("Runs on this machine", len(summaries))
st.write("GPU available:" if torch.cuda.is_available() else "No GPU: training runs on the CPU.")
for run in summaries:
    st.write(f"{run.name}: {run.state}")
