"""Results grid: the paper's Tables S1-S3 (and Table 1) with own runs side by side, one metric at a time."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from app_pages.study_deck import deck_section, grid_chart_button
from app_pages.widgets import learning_curves_chart, md, models_and_results, own_runs_notice, run_page
from wildvision import catalog
from wildvision.analysis.export import chart_config, colour_scaled, export_ready, fixed_formatter, to_csv, to_latex, trained_on_words
from wildvision.analysis.grid import difference_to, filter_grid, pin_row, results_grid, row_label, sort_grid, source_choices, with_short_run_names
from wildvision.analysis.run_detail import confusion_matrices, results_table
from wildvision.analysis.tidy import METRIC_LABELS, PAPER, TEST_SET_LABELS, has_own_runs, run_data_notes, short_run_name
from wildvision.reports.deck import grid_caption
from wildvision.wording import with_hint


def page() -> None:
    st.title("Results grid")
    st.caption(
        "The paper's reported test results (Kulkarni & Di Minin 2022, Tables S1-S3 and Table 1) and your own "
        "runs, laid out like the paper: one row per architecture and training regime, one column per training "
        "dataset (bg = with background images, no_bg = without) and test set. Every row says where its numbers "
        "come from: the paper's table(s) or the run folder's name."
    )

    _, frame, folder = models_and_results()

    notes = run_data_notes(frame)
    demo = notes[notes["demo"]]
    message = "Rows whose origin is **run** are your own measurements, **NOT the paper's results**: they were trained and tested on your data and test sets."
    if not demo.empty:
        message += (
            f" {len(demo)} of {len(notes)} run(s) used the shipped demo data, a proxy whose positives are "
            "cat and dog listing photos, not wild animals for sale: their numbers only show that the software works."
        )
    own_runs_notice(frame, folder, ". Until then the grid shows the paper's numbers only.", message)

    # ---------------------------------------------------------------------------------------------
    # Controls
    # ---------------------------------------------------------------------------------------------

    metric = st.selectbox(
        "Metric",
        list(METRIC_LABELS),
        format_func=METRIC_LABELS.get,
        key="metric",
        help="Weighted over both classes as in Tables S1-S3; positive-class precision is Table 1 (out-of-distribution sets, bg only).",
    )
    grid = results_grid(frame, metric)

    models = list(dict.fromkeys(grid.index.get_level_values("model")))
    regimes = list(dict.fromkeys(grid.index.get_level_values("regime")))
    sources = source_choices(frame)
    filter_columns = st.columns(3)
    chosen_models = filter_columns[0].multiselect("Architecture", models, default=models, key="models")
    chosen_regimes = filter_columns[1].multiselect("Regime", regimes, default=regimes, key="regimes")
    chosen_sources = filter_columns[2].multiselect(
        "Source",
        sources,
        default=sources,
        key="sources",
        format_func=lambda s: "the paper (Tables S1-S3, Table 1)" if s == PAPER else f"run {short_run_name(s)}",  # as in the grid
    )
    shown = filter_grid(grid, chosen_models, chosen_regimes, chosen_sources)

    sort_columns = st.columns([1.8, 1, 1.8, 1.6])
    column_names = {f"{dataset} / {test_set}": (dataset, test_set) for dataset, test_set in grid.columns}
    sort_choice = sort_columns[0].selectbox("Sort by", ["Paper order (Table S1)"] + list(column_names), key="sort")
    descending = sort_columns[1].toggle("Highest first", value=True, key="descending")
    shown = sort_grid(shown, column_names.get(sort_choice), descending)

    row_keys = {row_label(key): key for key in shown.index}
    baseline_choice = sort_columns[2].selectbox(
        "Baseline row (pinned at the top)",
        ["none"] + list(row_keys),
        key="baseline",
        help="Pin a row to compare every other row with it.",
    )
    baseline = row_keys.get(baseline_choice)
    show_difference = sort_columns[3].toggle(
        "Difference to baseline",
        value=False,
        key="difference",
        disabled=baseline is None,
        help="Each cell minus the baseline row's value in the same column (positive: higher than the baseline).",
    )

    # ---------------------------------------------------------------------------------------------
    # The table
    # ---------------------------------------------------------------------------------------------

    if shown.empty:
        st.info("No rows match the filters: choose at least one architecture, regime and source.")
    else:
        if baseline is not None:
            shown = pin_row(shown, baseline)
        difference = bool(show_difference and baseline is not None)
        table = difference_to(shown, baseline) if difference else shown
        on_screen = with_short_run_names(table)  # run names as on the charts, so the last column fits the window
        styler = colour_scaled(on_screen, diverging=difference).format(fixed_formatter(table, signed=difference))
        title = METRIC_LABELS[metric] + (f", difference to {baseline_choice}" if difference else "")
        st.subheader(title)
        st.dataframe(styler, height=35 * (len(table) + table.columns.nlevels) + 10, placeholder="–", key="grid")
        n_paper = int((table.index.get_level_values("origin") == PAPER).sum())
        st.caption(
            f"{n_paper} paper rows and {len(table) - n_paper} own-run rows shown. The paper's 24 configurations are "
            "8 architectures x transfer on bg and no_bg (16) plus 4 architectures x scratch and combi on bg only (8); "
            "their no_bg cells are empty because the paper did not train them. Paper columns: test_in = Table S1, "
            "test_out_pet = Table S2, test_out_nopet = Table S3; accuracy is a fraction (the paper prints percent). "
            "Own runs are named by the end of their folder's name (run 152103-05db), as on the charts; the downloads give full names. "
            "Colour: darker blue = higher" + ("; red below the baseline, blue above." if difference else ".")
        )
        stem = f"wildvision-{metric}-{'difference' if difference else 'grid'}"
        export = st.columns(3)
        export[0].download_button("Download table as CSV", to_csv(table), file_name=f"{stem}.csv", mime="text/csv", key="csv", on_click="ignore")
        export[1].download_button(
            "Download table as LaTeX",
            to_latex(
                table,
                caption=title + (" (paper and own runs; own runs are not the paper's)" if has_own_runs(frame) else " (the paper's numbers)"),
                signed=difference,
            ),
            file_name=f"{stem}.tex",
            mime="text/x-tex",
            key="latex",
            on_click="ignore",
        )
        with export[2]:
            grid_chart_button(table, title, grid_caption(table, METRIC_LABELS[metric], baseline_choice if difference else None), difference, stem)
        with st.expander("The study deck: these results and the paper's figures on 16:9 slides"):
            deck_section()

    # ---------------------------------------------------------------------------------------------
    # One own run in detail
    # ---------------------------------------------------------------------------------------------

    st.header("One run in detail")
    all_runs = catalog.list_models(folder, include_default=False)  # read afresh: a run's state changes without its files
    if not all_runs:
        st.info(f"No runs in `{folder}` yet: start one on the Train page to see its learning curves and confusion matrices here.")
    else:
        by_name = {run.key: run for run in all_runs}
        chosen = st.selectbox(
            "Run",
            list(by_name),
            key="run",
            format_func=lambda name: f"{name} ({by_name[name].state})",
            help="Your own runs, newest first. Their numbers are measured on your data, not the paper's.",
        )
        run = by_name[chosen]
        # one line of text, not four st.metric boxes: a metric cuts a long value off ("squeezenet…") where text wraps
        epochs = run.epoch if run.epoch is not None else "-"
        st.markdown(f"Architecture **{md(run.arch)}** · Regime **{md(run.regime)}** · State **{md(run.state)}** · Epochs run **{epochs}**")
        if run.demo:
            st.warning("This run was trained on the demo data (a proxy): its numbers are NOT the paper's.")
        if run.state == "failed" and run.message:
            st.warning(f"The run failed: {with_hint(run.message, run.hint, 'page')}")
        if run.problem:
            st.warning(f"Run {run.key}: {run.problem}; its results are not shown.")

        try:
            figure = learning_curves_chart(run.path, title=f"Learning curves of {run.arch} (run {run.key})", demo=run.demo)
        except (ValueError, KeyError, TypeError) as error:  # a damaged metrics.jsonl
            st.warning(f"The learning curves of run {run.key} cannot be read ({error}).")
            figure = None
        threshold, test_results = run.threshold, results_table(run)
        if figure is not None:
            st.plotly_chart(figure, key="curves", config=chart_config(f"wildvision-{run.key}-learning-curves"))
        else:
            st.info("No epoch has finished yet, so there are no learning curves.")

        if test_results.empty:
            st.info("This run has no test results yet (results.json is written when it completes).")
        else:
            st.subheader("Test results of this run")
            st.dataframe(
                test_results,
                key="run_results",
                column_config={
                    "accuracy": st.column_config.NumberColumn("accuracy", format="%.4f"),
                    "f_score": st.column_config.NumberColumn("F-score", format="%.4f"),
                    "precision": st.column_config.NumberColumn("precision", format="%.4f"),
                    "recall": st.column_config.NumberColumn("recall", format="%.4f"),
                    "positive_precision": st.column_config.NumberColumn("positive-class precision", format="%.4f"),
                    "n_images": st.column_config.NumberColumn("images"),
                    "eval_time_s": st.column_config.NumberColumn("evaluation time (s)", format="%.1f"),
                    "seconds_per_image": st.column_config.NumberColumn("seconds per image", format="%.3f"),
                },
            )
            st.caption("Metrics at a decision threshold of 0.5 and weighted over both classes, as in the paper's Tables S1-S3.")

            st.subheader("Confusion matrices")
            at_threshold = False
            if threshold is None:
                st.caption(
                    "This run's results.json records no decision threshold (it was written before thresholds were kept), "
                    "so the matrices are counted at 0.5, the paper's threshold."
                )
            else:
                counted_at = {
                    "threshold": f"the run's decision threshold, {threshold:.3f} (what predict flags with)",
                    "0.5": "0.5 (the paper's threshold, as in the table above)",
                }
                at_threshold = st.radio("Count predictions at", list(counted_at), format_func=counted_at.get, horizontal=True, key="cm_at") == "threshold"
            matrices = confusion_matrices(run, at_threshold=at_threshold)
            where = f"threshold {threshold:.3f}" if at_threshold else "threshold 0.5"
            data = trained_on_words(run.demo)
            if matrices:
                cells = st.columns(min(len(matrices), 3))
                for index, (test_set, matrix) in enumerate(matrices.items()):
                    heatmap = px.imshow(
                        matrix,
                        text_auto=True,
                        color_continuous_scale="Blues",
                        aspect="auto",
                        labels={"x": "predicted class", "y": "true class", "color": "images"},
                    )
                    heatmap.update_xaxes(tickangle=-30)
                    heatmap.update_layout(
                        height=300, coloraxis_showscale=False, margin={"l": 140, "r": 10, "t": 10, "b": 10}
                    )  # room for the class names: the caption is placed from it
                    title = f"Confusion matrix of {run.arch} (run {short_run_name(run.key)}) on {TEST_SET_LABELS.get(test_set, test_set)}"
                    caption = (
                        f"Photos counted by their true class (rows) and the class {run.arch} predicted (columns), {int(matrix.to_numpy().sum())} "
                        f"in all, at {where}. Trained on {data}."
                    )
                    cells[index % len(cells)].plotly_chart(
                        export_ready(heatmap, caption, line=40, title=title),  # 40 characters fit a third of the page
                        key=f"cm-{test_set}",
                        config=chart_config(f"wildvision-{run.key}-confusion-{test_set}-{where.replace(' ', '-')}"),
                    )
                st.caption(
                    f"Rows: the true class; columns: what the model predicted. Counts of images at {where}: a photo is predicted "
                    "positive when its score is at least that" + (", the threshold the run chose on test_in for its target precision." if at_threshold else ".")
                )
            else:
                st.info(f"results.json of run {run.key} has no confusion matrices at {where}.")
        with st.expander("Configuration (config.json)"):
            st.json(run.config, expanded=False)


run_page(page, "Results grid")
