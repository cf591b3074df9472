"""Efficiency: F-score gained per extra parameter over SqueezeNet (the paper's Section 3.3 and Fig 3)."""

from __future__ import annotations

import math

import plotly.express as px
import streamlit as st

from app_pages.widgets import models_and_results, run_page
from wildvision import paper
from wildvision.analysis.efficiency import EfficiencyUnavailable, efficiency_points, efficiency_table, gain_headline, inference_times
from wildvision.analysis.export import chart_config, export_ready, f_axis_range, format_gain, label_positions, own_runs_words
from wildvision.analysis.tidy import DATASET_LABELS, PAPER, REGIME_LABELS, TEST_SET_LABELS, bar_label, dataset_order, has_own_runs, short_run_name
from wildvision.catalog import RUN, test_set_order


def page() -> None:
    st.title("Efficiency")
    st.caption(
        "Does a bigger network pay for its size? Section 3.3 of the paper measures each architecture against "
        "SqueezeNet, the smallest and weakest model: gain = (F_model - F_SqueezeNet) / (parameters_model - "
        "parameters_SqueezeNet), the F-score gained per extra parameter. Below it is shown per million extra "
        "parameters. The paper says it used test_in, but only its out-of-distribution sets reproduce its finding "
        "that DenseNet121 has the highest gain, so test_out_pet is the default."
    )

    records, frame, folder = models_and_results()
    has_runs = has_own_runs(frame)

    origin_labels = {PAPER: "The paper's reported numbers", RUN: "Your own runs (not the paper's)"}
    origin = st.radio("Source", list(origin_labels), format_func=origin_labels.get, horizontal=True, key="origin")
    if origin == RUN and not has_runs:
        st.info(
            f"No completed runs yet in `{folder}`: start one on the Train page (a SqueezeNet run plus at least one other "
            "architecture with the same regime, dataset and test set gives a gain). Showing the paper's numbers meanwhile."
        )
        origin = PAPER
    if origin == RUN:
        st.warning(
            "Own runs: F-scores measured on your data and test sets, NOT the paper's results. Runs on the shipped demo "
            "data (cats and dogs as a proxy) only show that the software works. Parameter counts are the registry's "
            "(same 2-class head as the paper's Table S4)."
        )

    f_rows = frame[(frame["origin"] == origin) & (frame["metric"] == "f_score")]
    columns = st.columns(3)
    test_sets = test_set_order(f_rows["test_set"])
    test_set = columns[0].selectbox(
        "Test set",
        test_sets,
        index=test_sets.index("test_out_pet") if "test_out_pet" in test_sets else 0,
        key="test_set",
        format_func=lambda t: TEST_SET_LABELS.get(t, t),
    )
    datasets = dataset_order(f_rows["dataset"])
    dataset = columns[1].selectbox("Training dataset", datasets, key="dataset", format_func=lambda d: DATASET_LABELS.get(d, d))
    regimes = [r for r in paper.REGIMES if r in set(f_rows["regime"])] + sorted(set(f_rows["regime"]) - set(paper.REGIMES))
    regime = columns[2].selectbox("Training regime", regimes, key="regime", format_func=lambda r: REGIME_LABELS.get(r, r))
    selection = f"{'paper' if origin == PAPER else 'own runs'}, {test_set}, {dataset}, {regime}"
    # the same choice in plain words, for a chart's title and caption: its PNG leaves the selectboxes behind
    plain_selection = f"{TEST_SET_LABELS.get(test_set, test_set)}; training data: {DATASET_LABELS.get(dataset, dataset)}; {REGIME_LABELS.get(regime, regime)}"
    chosen_rows = frame[(frame["origin"] == origin) & (frame["test_set"] == test_set) & (frame["dataset"] == dataset) & (frame["regime"] == regime)]
    numbers = "the paper's Tables S1-S4." if origin == PAPER else own_runs_words(chosen_rows) + " Parameters: the architecture registry's."

    # ---------------------------------------------------------------------------------------------
    # Ranked gain
    # ---------------------------------------------------------------------------------------------

    st.header("Gain over SqueezeNet")
    try:
        gains = efficiency_table(frame, origin, test_set, dataset, regime)
    except EfficiencyUnavailable as reason:
        st.info(str(reason))
        gains = None

    points = efficiency_points(frame, origin, test_set, dataset, regime)
    file_stem = f"wildvision-{'paper' if origin == PAPER else 'runs'}-{test_set}-{dataset}-{regime}"
    if gains is not None and gains.empty:
        st.info(f"Only SqueezeNet itself has an F-score for {selection}: there is nothing to rank against it yet.")
    elif gains is not None:
        baseline_f = float(points.loc[points["model"] == paper.BASELINE, "f_score"].iloc[0])
        st.markdown(gain_headline(gains, baseline_f, selection))
        beats = {True: "beats SqueezeNet (positive gain)", False: "does not beat SqueezeNet (zero or negative gain)"}
        chart = gains.assign(
            label=bar_label(gains.assign(origin=origin)),
            shown=gains["gain_per_million"].map(format_gain),
            verdict=(gains["gain"] > 0).map(beats),
        )
        figure = px.bar(
            chart,
            x="gain_per_million",
            y="label",
            orientation="h",
            text="shown",
            color="verdict",
            color_discrete_map={beats[True]: "#4c78a8", beats[False]: "#e45756"},
            hover_data={"f_score": ":.3f", "params": ":,", "source": True, "label": False, "shown": False, "verdict": False, "gain_per_million": False},
            labels={
                "gain_per_million": "F-score gained per million extra parameters (vs SqueezeNet)",
                "label": "architecture",
                "f_score": "F-score",
                "params": "parameters",
                "source": "numbers from",
                "verdict": "",
                "shown": "gain per million",
            },
        )
        figure.update_traces(textposition="outside", cliponaxis=False)
        low, high = min(chart["gain_per_million"].min(), 0.0), max(chart["gain_per_million"].max(), 0.0)
        span = (high - low) or 1.0  # room beyond each bar's end for its label, so a losing bar's label stays off the names
        figure.update_xaxes(
            exponentformat="none",
            zeroline=True,
            zerolinewidth=1.5,
            zerolinecolor="#888",
            range=[low - 0.3 * span if low < 0 else 0.0, high + 0.2 * span if high > 0 else 0.05 * span],
        )
        figure.update_yaxes(categoryorder="array", categoryarray=list(chart["label"])[::-1])
        figure.update_layout(
            height=max(300, 120 + 45 * len(chart)),
            margin={"r": 90, "l": 90, "t": 50},
            legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        )
        title = f"F-score each architecture gains per million extra parameters over SqueezeNet, highest first: {plain_selection}"
        caption = (
            "Gain = (F-score - SqueezeNet's F-score) / (parameters - SqueezeNet's parameters), per million parameters: what a bigger "
            "model buys for its size (the paper's Section 3.3). Red: a bigger model that does not beat SqueezeNet. F-score: precision and "
            f"recall in one number (1 is perfect). Numbers: {numbers}"
        )
        st.plotly_chart(export_ready(figure, caption, title=title), key="gain_chart", config=chart_config(f"{file_stem}-gain"))
        st.dataframe(
            gains.drop(columns="gain").assign(  # runs named as on the chart, so the table fits the window
                gain_per_million=chart["shown"],
                source=gains["source"] if origin == PAPER else "run " + gains["source"].map(short_run_name),
            ),
            hide_index=True,
            key="gain_table",
            column_config={
                "rank": st.column_config.NumberColumn("rank"),
                "model": "architecture",
                "f_score": st.column_config.NumberColumn("F-score", format="%.3f"),
                "params": st.column_config.NumberColumn("parameters", format="localized"),
                "extra_params": st.column_config.NumberColumn("extra parameters vs SqueezeNet", format="localized"),
                "gain_per_million": st.column_config.TextColumn(
                    "gain per million parameters", help="F-score gained per million parameters beyond SqueezeNet's, 3 significant digits"
                ),
                "source": "numbers from",
            },
        )

    # ---------------------------------------------------------------------------------------------
    # F against size, and against measured speed
    # ---------------------------------------------------------------------------------------------

    st.header("F-score against model size")
    uncounted = points.loc[points["params"].isna(), "model"].tolist()
    if uncounted:
        st.warning(f"No parameter count for {', '.join(uncounted)} (not in this version's architecture registry); left out of the chart.")
        points = points.dropna(subset=["params"])
    if points.empty:
        st.info(f"No F-scores with a parameter count for {selection}: choose another test set, dataset or regime.")
    else:
        points = points.assign(role=["baseline (SqueezeNet)" if m == paper.BASELINE else "architecture" for m in points["model"]])
        figure = px.scatter(
            points,
            x="params",
            y="f_score",
            text="model",
            log_x=True,
            color="role",
            color_discrete_map={"baseline (SqueezeNet)": "#e45756", "architecture": "#4c78a8"},
            hover_data={"source": True, "params": ":,", "f_score": ":.3f", "role": False},
            labels={"params": "parameters (log scale)", "f_score": "F-score (weighted)", "source": "numbers from", "role": ""},
        )
        above_or_below = dict(zip(points["model"], label_positions(points["params"].astype(float), points["f_score"])))
        figure.update_traces(marker={"size": 11})
        figure.for_each_trace(lambda trace: trace.update(textposition=[above_or_below[m] for m in trace.text]))  # close labels apart
        low, high = math.log10(int(points["params"].min())), math.log10(int(points["params"].max()))
        figure.update_xaxes(dtick=1, range=[low - 0.35, high + 0.35])  # room for the labels at both ends
        figure.update_yaxes(range=f_axis_range(points["f_score"]))
        figure.update_layout(height=460, legend={"title": ""})
        title = f"F-score of each architecture against its size in parameters: {plain_selection}"
        caption = (
            "Each dot an architecture, named beside it; parameters on a log scale. SqueezeNet, the smallest and the baseline of the gain, "
            f"in red. F-score: precision and recall in one number (1 is perfect). Numbers: {numbers}"
        )
        st.plotly_chart(export_ready(figure, caption, title=title), key="size_chart", config=chart_config(f"{file_stem}-f-against-parameters"))

    if origin == RUN:
        st.header("F-score against measured inference time")
        times = inference_times(records)
        chosen = times[(times["test_set"] == test_set) & (times["dataset"] == dataset)]
        if chosen.empty:
            st.info(f"No completed own run was evaluated on {test_set} with dataset {dataset}.")
        else:
            chosen = chosen.assign(
                ms_per_image=chosen["seconds_per_image"] * 1000,
                label=bar_label(chosen.assign(origin=RUN)),
                training=chosen["regime"].map(lambda r: REGIME_LABELS.get(r, r)),
            )
            figure = px.scatter(
                chosen,
                x="ms_per_image",
                y="f_score",
                color="model",
                symbol="training",
                text="label",
                hover_data={"source": True, "n_images": True, "eval_time_s": ":.1f", "label": False},
                labels={
                    "ms_per_image": "measured time per image (milliseconds)",
                    "f_score": "F-score (weighted)",
                    "source": "run",
                    "n_images": "images",
                    "eval_time_s": "evaluation time (s)",
                    "model": "architecture",
                    "training": "regime",
                },
            )
            low, high = chosen["ms_per_image"].min(), chosen["ms_per_image"].max()
            pad = max((high - low) * 0.25, high * 0.1)
            above_or_below = dict(zip(chosen["label"], label_positions(chosen["ms_per_image"], chosen["f_score"], log_x=False, near_x=pad)))
            figure.update_traces(marker={"size": 11})
            figure.for_each_trace(lambda trace: trace.update(textposition=[above_or_below[label] for label in trace.text]))
            figure.update_xaxes(range=[max(0.0, low - pad), high + pad])
            figure.update_yaxes(range=f_axis_range(chosen["f_score"]))
            figure.update_layout(height=460)
            title = (
                f"F-score of own runs against the time they took per photo, on {TEST_SET_LABELS.get(test_set, test_set)}; "
                f"training data: {DATASET_LABELS.get(dataset, dataset)}"
            )
            caption = (
                f"{own_runs_words(frame[frame['source'].isin(chosen['source'])])} Each dot a run, named beside it; time per photo = "
                "its whole evaluation time (loading and decoding included) / its photos, on the machine that evaluated it."
            )
            st.plotly_chart(
                export_ready(figure, caption, title=title), key="time_chart", config=chart_config(f"wildvision-runs-{test_set}-{dataset}-f-against-time")
            )
            st.caption(
                "Time per image = a run's whole evaluation time on this test set (image loading and decoding included) "
                "divided by its number of images, on the machine and device that ran it; compare runs measured on the same "
                "machine only. The paper reports minutes per full test set (Tables S2, S3), not per image."
            )


run_page(page, "Efficiency")
