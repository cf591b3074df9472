"""Generalisation: in-distribution (test_in) against out-of-distribution test sets (the paper's Figs 1, 2 and Table 1)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.widgets import models_and_results, own_runs_notice, run_page, threshold_tradeoff
from wildvision import catalog, paper
from wildvision.analysis.export import chart_config, colour_scaled, export_ready, fixed_formatter, own_runs_words, to_csv, to_latex
from wildvision.analysis.generalisation import drop_long, figure_data, generalisation_drop, regime_comparison_models
from wildvision.analysis.grid import positive_precision_table, with_short_run_names
from wildvision.analysis.tidy import (
    DATASET_LABELS,
    METRIC_LABELS,
    PAPER,
    REGIME_LABELS,
    TEST_SET_COLOURS,
    TEST_SET_LABELS,
    bar_label,
    dataset_order,
    has_own_runs,
    short_run_name,
)
from wildvision.catalog import RUN, test_set_order

METRIC_AXIS = {"f_score": "F-score (weighted)", "accuracy": "accuracy (fraction)"}
#: Own runs' bars are hatched, the paper's solid, in every chart; the legend names both.
ORIGIN_NAMES = {PAPER: "the paper", RUN: "own run (hatched)"}
ORIGIN_PATTERNS = {ORIGIN_NAMES[PAPER]: "", ORIGIN_NAMES[RUN]: "/"}


def mark_origin(figure, colour_title: str):
    """Bars of one colour share a slot whatever their origin (a paper bar and a run bar never share an x
    label), so hatching own runs leaves no gaps; the legend reads "test set, origin"."""
    figure.for_each_trace(lambda trace: trace.update(offsetgroup=trace.name.rsplit(", ", 1)[0]))
    # white stripes over the full colour: the test set's colour stays as strong as on the paper's bars
    figure.for_each_trace(
        lambda trace: trace.update(marker_pattern={"fillmode": "overlay", "fgcolor": "white", "solidity": 0.3, "size": 7}),
        selector=lambda trace: trace.name.endswith(ORIGIN_NAMES[RUN]),
    )
    figure.update_layout(legend={"title": f"{colour_title}, numbers from"})
    return figure


#: What a chart's metric means, for its caption: the picture leaves the page that explains it.
METRIC_WORDS = {
    "f_score": "F-score: precision and recall in one number, averaged over both classes weighted by their photos (1 is perfect).",
    "accuracy": "Accuracy: the share of photos classified right (1 is perfect).",
    "precision": "Precision: of the photos put in a class, the share that belong there, averaged over both classes.",
    "recall": "Recall: of the photos of a class, the share found, averaged over both classes.",
}


def origin_words(frame: pd.DataFrame) -> str:
    """Where the bars of a chart drawn from `frame` come from, for its caption: the paper's tables, and own runs (never the paper's) if it has any."""
    return " ".join(filter(None, ["Solid bars: the paper's numbers (Tables S1-S3).", own_runs_words(frame, "Hatched bars, named (run …)")]))


def grouped_bars(
    data: pd.DataFrame,
    metric: str,
    facet: str,
    facet_order: list[str],
    title: str,
    facet_labels: dict[str, str],
    colours: dict[str, str],
    caption: str = "",
):
    """Bars per model, one per test set (`colours`: each test set's colour, in the tables' order), side by side, the
    test sets named in plain words; one panel per `facet` value, in `facet_order`."""
    part = data[data["metric"] == metric].copy()
    part["test_set"] = part["test_set"].map(lambda t: TEST_SET_LABELS.get(t, t))
    colours = {TEST_SET_LABELS.get(t, t): colour for t, colour in colours.items()}
    part["panel"] = part[facet].map(lambda v: facet_labels.get(v, v))
    part["numbers"] = part["origin"].map(ORIGIN_NAMES)
    present = set(part[facet])
    panels = [facet_labels.get(v, v) for v in facet_order if v in present]
    figure = px.bar(
        part,
        x="label",
        y="value",
        color="test_set",
        barmode="group",
        facet_col="panel",
        pattern_shape="numbers",
        pattern_shape_map=ORIGIN_PATTERNS,
        category_orders={
            "test_set": [t for t in colours if t in set(part["test_set"])],
            "panel": panels,
            "numbers": [n for n in ORIGIN_PATTERNS if n in set(part["numbers"])],
        },
        color_discrete_map=colours,
        hover_data={"source": True, "model": True, "regime": True, "dataset": True, "value": ":.3f", "label": False, "panel": False, "numbers": False},
        labels={"label": "architecture", "value": METRIC_AXIS[metric], "test_set": "test set", "source": "numbers from"},
    )
    figure.for_each_annotation(lambda a: a.update(text=f"<b>{a.text.split('=')[-1]}</b>"))
    figure.update_xaxes(matches=None, title_text="", tickangle=-35)
    figure.update_yaxes(range=[0, 1.05])
    figure.update_layout(height=500)
    # each panel in Table S1's order with each own run beside the paper's bar, and only the bars it has
    order, present = list(dict.fromkeys(part["label"])), {}
    for trace in figure.data:
        present.setdefault(trace.xaxis, set()).update(trace.x)
    for axis, labels in present.items():
        figure.layout["xaxis" + axis.removeprefix("x")].update(categoryorder="array", categoryarray=[x for x in order if x in labels])
    return export_ready(mark_origin(figure, "test set"), caption, title=title)


def page() -> None:
    st.title("Generalisation")
    st.caption(
        "How much worse do models get on photos from outside their training distribution? test_in is the 20% held "
        "out of the training data (also used to pick the best epoch, so it is optimistic); test_out_pet and "
        "test_out_nopet are new images, with and without pets. The paper (Section 3.1) finds all models alike on "
        "test_in, and training with background images (bg) clearly better out of distribution."
    )

    records, frame, folder = models_and_results()
    own_runs_notice(
        frame,
        folder,
        ", with test sets named test_out_pet and test_out_nopet, to see your runs next to the paper's bars. Until then the charts show the paper's numbers.",
        "Hatched bars, labelled “(run …)”, are your own runs, measured on your data and test sets: NOT the paper's results "
        "(runs on the shipped demo data are a cats-and-dogs proxy). Solid bars are the paper's.",
    )

    test_sets = test_set_order(frame["test_set"])
    extra = dict(zip([t for t in test_sets if t not in TEST_SET_COLOURS], px.colors.qualitative.Set2))
    colours = {t: TEST_SET_COLOURS.get(t) or extra[t] for t in test_sets}

    # ---------------------------------------------------------------------------------------------
    # Fig 1: transfer, bg against no_bg
    # ---------------------------------------------------------------------------------------------

    st.header("With and without background images (Fig 1)")
    fig1 = figure_data(frame, regimes=["transfer"])
    if fig1.empty:
        st.info("No transfer-regime results to show.")
    else:
        tabs = st.tabs(["F-score", "Accuracy"])
        for tab, metric in zip(tabs, ("f_score", "accuracy")):
            with tab:
                st.plotly_chart(
                    grouped_bars(
                        fig1,
                        metric,
                        "dataset",
                        dataset_order(fig1["dataset"]),
                        f"{METRIC_LABELS[metric].split(' (')[0]} of each architecture fine-tuned from ImageNet (transfer regime), "
                        "trained with and without background photos, in and out of distribution",
                        DATASET_LABELS,
                        colours,
                        f"{origin_words(fig1)} {METRIC_WORDS[metric]} As in the paper's Fig 1.",
                    ),
                    key=f"fig1-{metric}",
                    config=chart_config(f"wildvision-fig1-{metric}-transfer-bg-no_bg"),
                )

    # ---------------------------------------------------------------------------------------------
    # Fig 2: transfer, scratch, combi on bg
    # ---------------------------------------------------------------------------------------------

    st.header("Training regimes: transfer, scratch, combi (Fig 2)")
    fig2 = figure_data(frame, datasets=["bg"], models=regime_comparison_models(frame))
    if fig2.empty:
        st.info("No results for the four architectures trained in all three regimes.")
    else:
        best_transfer = (
            frame[(frame["origin"] == PAPER) & (frame["regime"] == "transfer") & (frame["dataset"] == "bg")].groupby(["metric", "test_set"])["value"].max()
        )
        tabs = st.tabs(["F-score", "Accuracy"])
        for tab, metric in zip(tabs, ("f_score", "accuracy")):
            with tab:
                figure = grouped_bars(
                    fig2,
                    metric,
                    "regime",
                    list(paper.REGIMES) + sorted(set(fig2["regime"]) - set(paper.REGIMES)),
                    f"{METRIC_LABELS[metric].split(' (')[0]} of the four best transfer models in each training regime "
                    "(fine-tuned, from scratch, or both), trained with background photos",
                    REGIME_LABELS,
                    colours,
                    "Dashed lines: the paper's best value on each test set for a fine-tuned (transfer) model trained with background photos "
                    f"(its Fig 1), in that test set's colour, as in the paper's Fig 2. {origin_words(fig2)} {METRIC_WORDS[metric]}",
                )
                for test_set in paper.TEST_SETS:
                    if (metric, test_set) in best_transfer.index:
                        figure.add_hline(
                            y=best_transfer[(metric, test_set)],
                            line_dash="dash",
                            line_color=colours[test_set],
                            line_width=1.5,
                        )
                st.plotly_chart(figure, key=f"fig2-{metric}", config=chart_config(f"wildvision-fig2-{metric}-regimes-bg"))
        st.caption(
            "Dashed lines: the paper's best transfer-regime value on each test set (Fig 1, bg), in the test set's colour, "
            "as in the paper's Fig 2. The paper trained scratch and combi only with background images."
        )

    # ---------------------------------------------------------------------------------------------
    # The drop from test_in to each OOD set
    # ---------------------------------------------------------------------------------------------

    st.header("Drop from test_in to out-of-distribution")
    columns = st.columns(3)
    drop_metric = columns[0].selectbox("Metric", ["f_score", "accuracy", "precision", "recall"], format_func=METRIC_LABELS.get, key="drop_metric")
    drops = generalisation_drop(frame, drop_metric)
    regimes = [r for r in paper.REGIMES if r in set(drops["regime"])] + sorted(set(drops["regime"]) - set(paper.REGIMES))
    drop_regime = columns[1].selectbox("Regime", regimes, key="drop_regime", format_func=lambda r: REGIME_LABELS.get(r, r))
    datasets = dataset_order(drops.loc[drops["regime"] == drop_regime, "dataset"])
    drop_dataset = columns[2].selectbox("Training dataset", datasets, key="drop_dataset", format_func=lambda d: DATASET_LABELS.get(d, d))

    chosen = drops[(drops["regime"] == drop_regime) & (drops["dataset"] == drop_dataset)]
    long = drop_long(chosen)
    if long.empty:
        st.info(f"No out-of-distribution results for {drop_regime} on {drop_dataset}: own runs need a test set besides test_in (e.g. --test test_out_pet=DIR).")
    else:
        long = long.assign(label=bar_label(long), numbers=long["origin"].map(ORIGIN_NAMES), ood_set=long["ood_set"].map(lambda t: TEST_SET_LABELS.get(t, t)))
        figure = px.bar(
            long,
            x="label",
            y="drop",
            color="ood_set",
            barmode="group",
            color_discrete_map={TEST_SET_LABELS.get(t, t): colour for t, colour in colours.items()},
            pattern_shape="numbers",
            pattern_shape_map=ORIGIN_PATTERNS,
            category_orders={
                "label": list(dict.fromkeys(long["label"])),
                "ood_set": [TEST_SET_LABELS.get(t, t) for t in test_sets if TEST_SET_LABELS.get(t, t) in set(long["ood_set"])],
                "numbers": [n for n in ORIGIN_PATTERNS if n in set(long["numbers"])],
            },
            hover_data={"source": True, "test_in": ":.3f", "ood_value": ":.3f", "drop": ":.3f", "label": False, "numbers": False},
            labels={
                "label": "architecture",
                "drop": f"drop in {METRIC_LABELS[drop_metric].split(' (')[0]}",
                "ood_set": "out-of-distribution set",
                "source": "numbers from",
                "ood_value": "out-of-distribution value",
            },
        )
        figure.update_xaxes(tickangle=-35)
        figure.update_layout(height=480)
        mark_origin(figure, "out-of-distribution set")
        stem = f"wildvision-drop-{drop_metric}-{drop_regime}-{drop_dataset}"
        title = (
            f"How much {METRIC_LABELS[drop_metric].split(' (')[0]} falls on photos from elsewhere: "
            f"{REGIME_LABELS.get(drop_regime, drop_regime)}; {DATASET_LABELS.get(drop_dataset, drop_dataset)}"
        )
        drawn = frame[frame["source"].isin(chosen["source"])]  # the rows behind the bars, with whether a run trained on the demo data
        caption = (
            "Drop = the value on test_in (photos held out of the training data) minus the value on a set of photos from elsewhere "
            f"(out of distribution): higher means worse away from the training photos. {origin_words(drawn)} {METRIC_WORDS[drop_metric]}"
        )
        st.plotly_chart(export_ready(figure, caption, title=title), key="drop_chart", config=chart_config(stem))
        # regime and dataset are the selection above, a run is named as on the chart, and the values sit under two
        # short headers: narrow enough for a 1400 px window (five index columns and long headers pushed the last one out)
        shown = chosen.assign(source=[s if o == PAPER else f"run {short_run_name(s)}" for s, o in zip(chosen["source"], chosen["origin"])])
        shown = shown.drop(columns=["regime", "dataset", "origin"]).set_index(["model", "source"])
        metric_name = METRIC_LABELS[drop_metric]
        shown.columns = pd.MultiIndex.from_tuples(
            [("drop from test_in", c.removeprefix("drop_")) if c.startswith("drop_") else (metric_name, c) for c in shown.columns]
        )
        st.dataframe(
            shown.style.format(fixed_formatter(shown)),
            height=35 * (len(shown) + 2) + 3,
            placeholder="–",
            key="drop_table",
            column_config={"model": st.column_config.TextColumn("architecture", width=130), "source": st.column_config.TextColumn("numbers from", width=190)},
        )
        st.caption(
            f"{metric_name} on each test set and its drop from test_in (test_in minus the out-of-distribution value; {drop_regime}, "
            f"{drop_dataset}). Runs are named as on the chart, by the end of their folder's name; the CSV gives the full names."
        )
        st.download_button(
            "Download drop table as CSV",
            to_csv(chosen.set_index(["model", "regime", "dataset", "origin", "source"])),
            file_name=f"{stem}.csv",
            mime="text/csv",
            key="drop_csv",
            on_click="ignore",
        )

    # ---------------------------------------------------------------------------------------------
    # Table 1: positive-class precision
    # ---------------------------------------------------------------------------------------------

    st.header("Precision on the positive class (Table 1)")
    st.caption(
        "Of the photos a model flags as captive or for sale, the share that really are: what matters when a person "
        "checks the flagged listings. Models trained with background images (bg), out-of-distribution sets only."
    )
    try:
        table1 = positive_precision_table(frame)
    except ValueError as reason:
        st.info(str(reason))
    else:
        st.dataframe(  # runs named as on the charts, so the run's name is not cut off
            colour_scaled(with_short_run_names(table1)).format(fixed_formatter(table1)),
            height=35 * (len(table1) + 1) + 3,
            placeholder="–",
            key="table1",
        )
        own = has_own_runs(frame)
        caption = "Positive-class precision " + ("(the paper's Table 1 and own runs, which are not the paper's)" if own else "(the paper's Table 1)")
        st.download_button(
            "Download Table 1 as LaTeX",
            to_latex(table1, caption=caption),
            file_name="wildvision-table1.tex",
            mime="text/x-tex",
            key="table1_latex",
            on_click="ignore",
        )

    # ---------------------------------------------------------------------------------------------
    # Decision threshold: precision and recall out of distribution
    # ---------------------------------------------------------------------------------------------

    st.header("Decision threshold out of distribution")
    st.caption(
        "Each model's threshold is chosen on test_in for a target precision on the positive class (0.95 by default). "
        "Move it to see what it costs on the out-of-distribution sets: the precision and recall of the flagged photos."
    )
    scored = {("default model (shipped)" if record.is_default else record.key): record for record in records if record.has_scores}
    if not scored:
        st.info("No model with stored test scores yet: train one on the Train page (runs keep their scores).")
    else:
        chosen_model = scored[st.selectbox("Model", list(scored), key="threshold_model")]
        stored = catalog.stored_scores(chosen_model)
        if stored is None:
            st.warning(f"The stored test scores of {chosen_model.key} cannot be read.")
        else:
            threshold_tradeoff(stored, chosen_model.threshold, model=chosen_model.model, key="generalisation_threshold")


run_page(page, "Generalisation")
