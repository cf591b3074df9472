"""wildvision.analysis's exports: CSV and LaTeX tables as the paper prints them, and charts ready for a slide."""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import pandas as pd
import pytest

from helpers import PAPER_ROW, frame_of, make_run
from wildvision.analysis.efficiency import efficiency_points, efficiency_table, gain_headline
from wildvision.analysis.export import (
    CHART_FONT,
    EDGE,
    LEGEND_PAD,
    TITLE_LINE_HEIGHT,
    TITLE_PAD,
    chart_config,
    export_ready,
    f_axis_range,
    format_fixed,
    format_gain,
    label_positions,
    latex_escape,
    own_runs_words,
    table_decimals,
    to_csv,
    to_latex,
    trained_on_words,
)
from wildvision.analysis.grid import difference_to, pin_row, positive_precision_table, results_grid, row_label, with_short_run_names
from wildvision.analysis.tidy import short_run_name


def test_csv_export_rounds_away_float_noise_but_keeps_every_printed_digit(paper_frame):
    grid = results_grid(paper_frame, "f_score")
    baseline = ("squeezenet1_0", "transfer", "paper", PAPER_ROW)
    difference = difference_to(pin_row(grid, baseline), baseline)
    raw = difference.to_csv()
    assert "0.10999999999999999" in raw or "0.11000000000000001" in raw  # what the plain export wrote
    csv = to_csv(difference)
    assert "9999999" not in csv and "0000001" not in csv
    back = pd.read_csv(io.StringIO(csv)).set_index(["model", "regime", "origin", "source"])
    assert back.loc[("densenet121", "transfer", "paper", PAPER_ROW), "bg / test_out_pet"] == 0.11  # exactly, as printed
    accuracy = results_grid(paper_frame, "accuracy")
    back = pd.read_csv(io.StringIO(to_csv(accuracy)))
    assert back.loc[back["model"].eq("alexnet") & back["regime"].eq("transfer"), "no_bg / test_in"].item() == 0.9486
    run_values = pd.DataFrame({"f_score": [56 / 108, 2.342952e-11]})
    assert to_csv(run_values).splitlines() == ["f_score", "0.518519", "2.34295e-11"]


def test_latex_escape_makes_plain_text_print_literally():
    assert latex_escape("squeezenet1_0") == r"squeezenet1\_0"
    assert latex_escape("95% of {x} & $5 #1 ~ ^ \\") == r"95\% of \{x\} \& \$5 \#1 \textasciitilde{} \textasciicircum{} \textbackslash{}"
    assert latex_escape("a · b – c “d”") == r"a \textperiodcentered{} b -- c ``d''"
    latex = to_latex(pd.DataFrame({"F": [0.5]}), caption="F of squeezenet1_0 · transfer, 100%")
    assert r"\caption{F of squeezenet1\_0 \textperiodcentered{} transfer, 100\%}" in latex


def test_latex_prints_one_number_of_decimals_per_table(paper_frame):
    accuracy = results_grid(paper_frame, "accuracy")
    assert table_decimals(accuracy) == 4  # Table S1 prints accuracy to 4 decimals (94.86%)
    latex = to_latex(accuracy)
    body = latex[latex.index("\\midrule") : latex.index("\\bottomrule")].splitlines()[1:]
    assert len(body) == 16
    numbers = [cell.strip(" \\") for row in body for cell in row.split(" & ")[4:] if cell.strip(" \\") != "--"]
    assert len(numbers) == 72 and {len(n.split(".")[1]) for n in numbers} == {4}
    assert "0.9486" in numbers and "0.9440" in numbers  # Table S1's 94.86% and 94.4%
    table1 = positive_precision_table(paper_frame)
    assert table_decimals(table1) == 2 and "0.94 & 0.95" in to_latex(table1)
    # differences carry their sign; counts stay whole numbers
    signed = to_latex(pd.DataFrame({"drop": [0.11, -0.2], "images": [80, 64]}), signed=True)
    assert "+0.11 & 80" in signed and "-0.20 & 64" in signed
    assert format_fixed(float("nan"), 3) == "--" and format_fixed(0.0, 3, signed=True) == "+0.000"


def latex_compiler() -> str:
    """pdflatex, or a skip saying how to install it (a failure in CI, where WILDVISION_REQUIRE_SHARED=1)."""
    found = shutil.which("pdflatex")
    if found is None:
        message = "needs pdflatex with booktabs (Debian: apt-get install --no-install-recommends texlive-latex-base texlive-latex-recommended)"
        if os.environ.get("WILDVISION_REQUIRE_SHARED") == "1":
            pytest.fail(message + "; WILDVISION_REQUIRE_SHARED=1 forbids skipping")
        pytest.skip(message)
    return found


def test_latex_exports_compile_with_pdflatex(tmp_path):
    pdflatex = latex_compiler()
    make_run(tmp_path / "runs", arch="squeezenet1_0")
    frame = frame_of(tmp_path / "runs")
    grid = results_grid(frame, "f_score")
    baseline = ("squeezenet1_0", "transfer", "paper", PAPER_ROW)
    tables = [
        to_latex(grid, caption="F-score (weighted) of squeezenet1_0 and 100% of runs"),
        to_latex(
            difference_to(pin_row(grid, baseline), baseline),
            signed=True,
            caption=f"F-score, difference to {row_label(baseline)} – own runs are not the paper's",
        ),
        to_latex(positive_precision_table(frame), caption="Positive-class precision (Table 1 and own runs)"),
    ]
    assert all(table.startswith("% needs \\usepackage{booktabs}\n") for table in tables)
    document = "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n\\begin{document}\n"
    (tmp_path / "tables.tex").write_text(document + "\n".join(tables) + "\n\\end{document}\n", encoding="utf-8")
    done = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=tmp_path, check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 1000
    log = (tmp_path / "tables.log").read_text(encoding="utf-8", errors="replace")
    assert "Missing character" not in log and "Undefined control sequence" not in log


# ---------------------------------------------------------------------------------------------
# Efficiency wording and chart helpers
# ---------------------------------------------------------------------------------------------


def test_gain_is_printed_with_significant_digits_never_as_zero():
    assert format_gain(2.342952e-05) == "+0.0000234"  # vgg11_bn on test_in, no_bg: was "+0.0000"
    assert format_gain(-5.76e-05) == "-0.0000576"  # was "-0.0000"
    assert format_gain(0.0176864) == "+0.0177" and format_gain(-0.005467) == "-0.00547"
    assert format_gain(0.000999999) == "+0.00100" and format_gain(0.0) == "0"
    assert format_gain(float("nan")) == "--"


def test_gain_headline_says_plainly_when_no_architecture_beats_squeezenet(paper_frame):
    def headline(test_set, dataset):
        gains = efficiency_table(paper_frame, "paper", test_set, dataset, "transfer")
        points = efficiency_points(paper_frame, "paper", test_set, dataset, "transfer")
        return gain_headline(gains, points.set_index("model").loc["squeezenet1_0", "f_score"], "the selection")

    assert headline("test_out_pet", "bg").startswith("**densenet121** has the highest gain for the selection: +0.0177 F-score")
    tiny = headline("test_in", "no_bg")
    assert tiny.startswith("**vgg11_bn** has the highest gain") and "+0.0000234" in tiny and "0.96 against SqueezeNet's 0.957" in tiny
    frame = paper_frame.copy()
    squeeze_in = (frame["model"] == "squeezenet1_0") & (frame["test_set"] == "test_in") & (frame["metric"] == "f_score")
    frame.loc[squeeze_in, "value"] = 0.97  # above every other architecture's test_in F-score
    gains = efficiency_table(frame, "paper", "test_in", "no_bg", "transfer")
    assert (gains["gain"] < 0).all()
    losing = gain_headline(gains, 0.97, "the selection")
    assert losing.startswith("**No architecture beats SqueezeNet** for the selection") and "0.97" in losing
    frame.loc[squeeze_in, "value"] = 0.96  # vgg11_bn ties
    gains = efficiency_table(frame, "paper", "test_in", "no_bg", "transfer")
    assert "the best (vgg11_bn) only equal its F-score of 0.96" in gain_headline(gains, 0.96, "the selection")


def test_chart_config_saves_a_sharp_png_without_the_plotly_logo():
    config = chart_config("wildvision-paper-test_out_pet/bg: gain")
    assert config == {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": "wildvision-paper-test_out_pet-bg-gain", "scale": 2}}


def test_f_axis_stays_within_zero_and_one():
    assert f_axis_range([0.61, 0.79]) == [0.5, 0.95]
    assert f_axis_range([0.98]) == [0.9, 1.05]  # one point: Plotly alone would run past 1.4
    assert f_axis_range([0.01, 1.0]) == [0.0, 1.05]
    assert f_axis_range([]) == [0.0, 1.05]


def test_grid_on_screen_names_runs_as_the_charts_do(tmp_path):
    run_dir = make_run(tmp_path)
    grid = results_grid(frame_of(tmp_path), "f_score")
    short = with_short_run_names(grid)
    assert short.index.names == grid.index.names
    pd.testing.assert_frame_equal(short.reset_index(drop=True), grid.reset_index(drop=True))
    run_key = ("squeezenet1_0", "transfer", "run", f"run {short_run_name(run_dir.name)}")
    assert short.loc[run_key, ("bg", "test_in")] == 0.9 and len(run_key[3]) < 20
    assert short.loc[("squeezenet1_0", "transfer", "paper", PAPER_ROW), ("bg", "test_in")] == pytest.approx(0.944)


def test_export_ready_names_one_font_for_all_text_of_a_chart():
    import plotly.express as px

    figure = px.bar(pd.DataFrame({"x": ["a", "b"], "y": [1, 2], "panel": ["p", "q"]}), x="x", y="y", facet_col="panel", title="t")
    assert export_ready(figure) is figure
    assert figure.layout.font.family == figure.layout.title.font.family == CHART_FONT
    assert [a.font.family for a in figure.layout.annotations] == [CHART_FONT] * 2  # the facet titles


def test_export_ready_keeps_charts_off_the_pictures_edges_and_legends_off_the_plots():
    """Streamlit's theme sets the side margins to 0: a plot with nothing to its right ran to the exported PNG's edge."""
    import plotly.express as px

    frame = pd.DataFrame({"x": ["a", "b"], "y": [1, 2], "kind": ["p", "q"]})
    figure = export_ready(px.bar(frame, x="x", y="y", color="kind").update_layout(margin={"l": 0, "r": 0}))
    assert figure.layout.margin.l == figure.layout.margin.r == EDGE > 0
    assert figure.layout.xaxis.automargin and figure.layout.yaxis.automargin, "margins grow for long names: none cut at the edge"
    assert figure.layout.legend.borderwidth == LEGEND_PAD > 0 and figure.layout.legend.bordercolor == "rgba(0,0,0,0)", "a clear border is padding"
    wide = export_ready(px.bar(frame, x="x", y="y").update_layout(margin={"l": 90, "r": 120}, legend={"borderwidth": 1, "bordercolor": "grey"}))
    assert (wide.layout.margin.l, wide.layout.margin.r) == (90, 120), "a wider margin a page chose stays"
    assert (wide.layout.legend.borderwidth, wide.layout.legend.bordercolor) == (1, "grey"), "and so does a legend border it drew"


def test_export_ready_writes_a_caption_inside_the_picture_below_the_axes_and_grows_the_chart_for_it():
    import plotly.express as px

    frame = pd.DataFrame({"x": ["a", "squeezenet1_0 (run 152103-05db)"], "y": [1, 2]})
    caption = "Solid bars: the paper's numbers (Tables S1-S3). Hatched bars: own runs on their own data, not the paper's <b>."
    plain = export_ready(px.bar(frame, x="x", y="y").update_layout(height=400), caption, line=50)
    (note,) = plain.layout.annotations
    assert note.text.split("<br>")[0] == "Solid bars: the paper's numbers (Tables S1-S3)." and "&lt;b&gt;" in note.text
    assert note.yref == "paper" and note.y == 0 and note.yanchor == "top" and note.yshift < 0
    assert plain.layout.margin.b >= -note.yshift + 17 * 3 and plain.layout.height > 400
    slanted = export_ready(px.bar(frame, x="x", y="y").update_xaxes(tickangle=-35), caption, line=50)
    assert slanted.layout.annotations[0].yshift < note.yshift, "slanted names reach further down: the caption goes below them"
    assert not export_ready(px.bar(frame, x="x", y="y")).layout.annotations, "no caption, no annotation"


def test_export_ready_puts_a_wrapped_escaped_title_at_the_top_and_keeps_the_plot_its_size():
    import plotly.express as px

    frame = pd.DataFrame({"x": ["a", "b"], "y": [1, 2]})
    title = "Confusion matrix of resnet18 (run 152103-05db) on test_in (20% held out of the training data) <i>"
    figure = export_ready(px.bar(frame, x="x", y="y").update_layout(height=300, margin={"t": 40}), title=title, line=60)
    lines = figure.layout.title.text.split("<br>")
    assert len(lines) == 3 and all(len(line) <= 45 for line in lines), "wrapped to three quarters of the caption's line"
    assert " ".join(lines) == title.replace("<i>", "&lt;i&gt;"), "a run's name is data, never Plotly markup"
    assert figure.layout.title.yref == "container" and figure.layout.title.yanchor == "top"
    assert figure.layout.title.y * figure.layout.height == pytest.approx(figure.layout.height - TITLE_PAD), "white above the title"
    added = figure.layout.margin.t - 40
    assert added >= TITLE_LINE_HEIGHT * 3 and figure.layout.height == 300 + added, "room above what the chart had; the plot keeps its height"
    assert figure.layout.title.font.family == CHART_FONT
    assert not export_ready(px.bar(frame, x="x", y="y")).layout.title.text, "no title asked for, none added"


def test_export_ready_wraps_a_long_caption_to_the_charts_width():
    import plotly.express as px

    frame = pd.DataFrame({"x": ["a", "b"], "y": [1, 2]})
    caption = " ".join(["Hatched bars: own runs on the demo proxy data, not the paper's results."] * 4)
    wide = export_ready(px.bar(frame, x="x", y="y"), caption)
    narrow = export_ready(px.bar(frame, x="x", y="y").update_layout(width=350), caption)
    wide_lines, narrow_lines = (figure.layout.annotations[0].text.split("<br>") for figure in (wide, narrow))
    assert max(map(len, wide_lines)) <= 110 and max(map(len, narrow_lines)) <= 50 < max(map(len, wide_lines))
    assert " ".join(narrow_lines) == caption, "every word kept, in order"
    assert narrow.layout.margin.b > wide.layout.margin.b and narrow.layout.margin.b >= -narrow.layout.annotations[0].yshift + 17 * len(narrow_lines)


def test_captions_call_demo_trained_runs_a_proxy_and_never_the_papers(tmp_path, paper_frame):
    assert own_runs_words(paper_frame, "Hatched bars") == "", "the paper's numbers alone: nothing to say of own runs"
    make_run(tmp_path / "demo", arch="squeezenet1_0", data="../shared/demo-data/train")
    demo = frame_of(tmp_path / "demo")
    assert own_runs_words(demo, "Hatched bars") == "Hatched bars: own runs on the demo proxy data (photos of cats and dogs), not the paper's results."
    make_run(tmp_path / "demo", arch="alexnet", data="/field/photos")
    assert "some on the demo proxy data" in own_runs_words(frame_of(tmp_path / "demo"))
    make_run(tmp_path / "field", arch="alexnet", data="/field/photos")
    assert own_runs_words(frame_of(tmp_path / "field")) == "Own runs on their own data, not the paper's results."
    assert trained_on_words(True) == "the demo proxy data (photos of cats and dogs), not the paper's"
    assert trained_on_words(False) == "its own data, not the paper's"


def test_close_scatter_labels_go_one_above_one_below(paper_frame):
    points = efficiency_points(paper_frame, "paper", "test_out_pet", "bg", "transfer")
    where = dict(zip(points["model"], label_positions(points["params"].astype(float), points["f_score"])))
    assert where["vgg11_bn"] == "top center" and where["vgg19_bn"] == "bottom center"  # 129M and 139M parameters, F 0.77 and 0.76
    assert where["densenet121"] == where["squeezenet1_0"] == "top center"  # nothing close by
    assert label_positions([50.0, 50.0, 80.0], [0.7, 0.7, 0.7], log_x=False, near_x=5) == ["top center", "bottom center", "top center"]
    filtered = pd.Series([0.7, 0.71], index=[5, 9])  # a filtered frame's column: positions, not labels
    assert label_positions(filtered, filtered, log_x=False) == ["bottom center", "top center"]
