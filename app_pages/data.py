"""Data: what is in a dataset before training on it: classes, sizes, sample photos, duplicates, label conflicts,
unreadable files; and the paper's species list (Table S7) and background queries (Table S8)."""

from pathlib import Path

import plotly.express as px
import streamlit as st

from app_pages.widgets import code, md, run_page
from wildvision import paper
from wildvision.analysis.export import chart_config, export_ready
from wildvision.data import DataFolderError
from wildvision.datacheck import (
    DataReport,
    DuplicateGroup,
    check_data,
    class_samples,
    class_table,
    contained_test_sets,
    findings_table,
    fingerprint,
    match_words,
    subset_line,
    thumbnail,
)
from wildvision.images import ImageError
from wildvision.roots import OutsideRoots, WalkTooLarge
from wildvision.shared import demo_data
from wildvision.spreadsheet import frame_csv
from wildvision.training.launch import page_path, parse_named_folders
from wildvision.wording import CLASS_FOLDERS

SAMPLES = 6  # thumbnails per class folder
KINDS = {  # DuplicateGroup.kind: what it means, in the page's words
    "within-data": "The same photo more than once in the training folder",
    "test-vs-data": "Test photos that are also in the training folder",
    "between-tests": "The same photo more than once in the test sets",
}
LAYOUT = (
    "A training folder holds one sub-folder per class: `captive/` (the photos to flag), at least one other class such as "
    "`wild/`, and optionally `background/`; every image file under a class folder counts (see docs/data.md)."
)


@st.cache_data(show_spinner=False, max_entries=8)
def _check(folder: str, tests: tuple[tuple[str, str], ...], positive: str, stamp: tuple) -> tuple[DataReport, dict[str, dict[str, list[Path]]]]:
    """The check and the sample photos of every class folder; `stamp` (the folders' fingerprint) makes a changed folder checked again."""
    report = check_data([folder], {name: Path(path) for name, path in tests}, positive)
    samples = {Path(folder).name or folder: class_samples(folder, SAMPLES, positive)}
    samples |= {name: class_samples(path, SAMPLES, positive) for name, path in tests}
    return report, samples


@st.cache_data(show_spinner=False, max_entries=2000)
def _thumbnail(path: str, stamp: tuple):
    try:
        return thumbnail(path)
    except ImageError:
        return None


def show_photo(cell, path: Path, caption: str) -> None:
    """One photo's thumbnail in a column, captioned; a file that cannot be opened says so instead."""
    stat = path.stat()
    image = _thumbnail(str(path), (stat.st_size, stat.st_mtime_ns))
    if image is None:
        cell.caption(f"{md(caption)}: cannot be opened")
    else:
        cell.image(image, caption=md(caption), width="stretch")  # a caption renders Markdown: a name is shown as it is


def show_group(group: DuplicateGroup) -> None:
    """A duplicate group's photos side by side, each captioned with where it is filed, so a person sees they are one photo."""
    for cell, member in zip(st.columns(SAMPLES), group.members):
        show_photo(cell, member.path, f"{member.where}: {member.path.name}")
    if len(group.members) > SAMPLES:
        st.caption(f"and {len(group.members) - SAMPLES:,} more files (in the table above)")


def checked(folder: str, tests: tuple[tuple[str, str], ...], positive: str) -> tuple[DataReport | None, dict]:
    """The check of `folder` with `tests`, or (None, {}) with the reason shown. A tree too large to walk (a mistyped
    folder high up the disk) is remembered for this session, so a rerun of the page does not walk it again."""
    too_large = st.session_state.setdefault("data_too_large", {})
    key = repr((folder, tests))
    try:
        if key in too_large:
            raise WalkTooLarge(too_large[key])
        with st.spinner("Checking every photo (a few seconds for thousands of photos; the next time is instant)..."):
            return _check(folder, tests, positive, fingerprint([folder, *(path for _, path in tests)]))
    except WalkTooLarge as error:
        too_large[key] = str(error)
        st.error(f"This folder is too large to check here: {md(str(error))}. Enter the training folder itself (one sub-folder per class).")
    except DataFolderError as error:
        st.error(f"This folder cannot be checked: {md(str(error))}.\n\n{LAYOUT}")
    except OSError as error:
        st.error(f"A folder could not be read: {md(str(error))}. Check that the path is right and that you may open it.")
    return None, {}


def is_demo(name: str, path: str) -> bool:
    demo = demo_data(name)
    return demo is not None and Path(path).resolve() == demo.resolve()


def page() -> None:
    st.title("Data")
    st.caption(
        "Check a dataset before training on it: how many photos each class has, a few of them to look at, photos that "
        "cannot be opened, the same photo saved more than once, and photos filed under both 'captive' and another class. "
        "Nothing here changes your files."
    )

    demo_train = demo_data("train")
    demo_tests = {name: demo_data(name) for name in ("test_out_pet", "test_out_nopet")}
    inputs = st.columns([3, 1])
    folder = inputs[0].text_input(
        f"Training folder (one sub-folder per class: {CLASS_FOLDERS})",
        str(demo_train) if demo_train else "",
        key="folder",
        placeholder="/path/to/train",
    )
    positive = inputs[1].text_input("Class to flag (its folder name)", "captive", key="positive")
    tests_text = st.text_area(
        "Test sets to check with it, one per line as NAME=FOLDER (optional)",
        "\n".join(f"{name}={path}" for name, path in demo_tests.items() if path),
        key="tests",
        placeholder="test_out_pet=/path/to/test_out_pet",
        help="Each test set is laid out like the training folder. Photos that are also in the training folder make a test set's scores look better than they are.",
    )
    if demo_train and folder.strip() == str(demo_train):
        st.caption("The fields start at the demo data: a proxy whose 'captive' photos are cats and dogs in listings, not wild animals for sale.")

    report = None
    if not folder.strip():
        st.info("Enter a training folder to check. " + LAYOUT)
    else:
        try:
            folder_path = page_path(folder)
            tests = tuple(parse_named_folders(tests_text, within_roots=True).items())
        except OutsideRoots as error:  # before anything is said of what the path holds, or whether it exists
            st.error(f"This folder cannot be checked: {md(str(error))}")
        except ValueError as error:
            st.error(f"The test sets could not be read: {md(str(error))}. Write one per line as NAME=FOLDER.")
        else:
            report, samples = checked(folder_path, tests, positive.strip() or "captive")
    if report is not None:
        # -----------------------------------------------------------------------------------------
        # Summary and classes
        # -----------------------------------------------------------------------------------------
        findings = findings_table(report)
        classes = class_table(report)
        extra = sum(len(g.members) - 1 for g in report.groups)
        numbers = st.columns(5)
        numbers[0].metric("Photos", f"{int(classes['images'].sum()):,}")
        numbers[1].metric("Class folders", len(classes))
        numbers[2].metric("Duplicate groups", f"{len(report.groups):,}", help=f"{extra:,} photos beyond the first of each group")
        numbers[3].metric("Label conflicts", len(report.conflicts))
        numbers[4].metric("Unreadable", report.unreadable)
        if not report.groups and not report.unreadable:
            st.success("No duplicates, no label conflicts and no unreadable files.")

        st.subheader("Classes")
        st.dataframe(
            classes,
            hide_index=True,
            column_config={
                "share": st.column_config.NumberColumn("share of folder", format="percent"),
                "width (min / median / max)": st.column_config.TextColumn(help="Pixels, upright"),
                "height (min / median / max)": st.column_config.TextColumn(help="Pixels, upright"),
            },
        )
        bars = classes.assign(where=classes["folder"] + " / " + classes["class"])
        balance = px.bar(bars, x="images", y="where", color="folder", orientation="h", text="images", title="Images per class folder")
        balance.update_yaxes(title_text="", autorange="reversed")
        balance.update_layout(height=120 + 32 * len(bars), legend_title_text="folder", margin={"t": 50, "l": 10, "r": 10, "b": 10})
        st.plotly_chart(
            export_ready(balance, "Photos per class folder of the checked dataset; a class far smaller than the others is learnt less well."),
            key="balance",
            config=chart_config("wildvision-class-balance"),
        )
        st.caption(f"Checked in {report.seconds:.1f} s. The chart shows each folder's classes; a class far smaller than the others is learnt less well.")

        # -----------------------------------------------------------------------------------------
        # Findings
        # -----------------------------------------------------------------------------------------
        st.subheader("Label conflicts")
        if not report.conflicts:
            st.caption("No photo is filed both under the class to flag and under another class.")
        for number, group in enumerate(report.groups, 1):
            if group.conflict:
                files = "\n".join(f"- {code(m.path)} ({md(m.where)})" for m in group.members)
                st.error(f"**The same photo is filed under {md(' and '.join(group.places))}** (group {number}):\n{files}")
                show_group(group)
        if report.conflicts:
            st.caption("Training leaves these photos out. Keep each in the one class folder it belongs to.")

        for name, paths in report.test_leaks().items():
            st.warning(f"{len(paths)} photo(s) of the test set **{md(name)}** are also in the training folder: its scores would look better than they are.")

        st.subheader("Duplicates")
        any_duplicates = False
        for kind, title in KINDS.items():
            rows = findings[findings["kind"] == kind]
            if rows.empty:
                continue
            any_duplicates = True
            if kind == "between-tests":  # many groups here are often one test set made from another: say so before it alarms
                for subset in contained_test_sets(report):
                    demo = is_demo(subset.inner, dict(tests)[subset.inner]) and is_demo(subset.outer, dict(tests)[subset.outer])
                    st.info(md(subset_line(subset)) + (" The demo data is made that way (see its README.md)." if demo else ""))
            group_numbers = [int(n) for n in dict.fromkeys(rows["group"])]
            with st.expander(f"{title}: {len(group_numbers):,} group{'s' if len(group_numbers) != 1 else ''}, {len(rows):,} files"):
                st.dataframe(rows.drop(columns=["kind", "reason"]), hide_index=True, key=f"groups-{kind}")
                number = st.selectbox(
                    "Look at a group",
                    group_numbers,
                    key=f"look-{kind}",
                    format_func=lambda n: f"group {n}: {len(report.groups[n - 1].members)} files, {match_words(report.groups[n - 1])}",
                )
                show_group(report.groups[number - 1])
        if not any_duplicates:
            st.caption("No photo appears twice.")
        st.caption(
            f"Photos are the same when their files are identical, or when their perceptual hashes (a 64-bit summary of what a photo "
            f"looks like) are at most {report.threshold} bits apart: resized or re-saved copies. Training uses one photo of each group and leaves label conflicts out; test photos that "
            "are also training photos stay in their test set, and are named in the run's warnings, unless you tick \"Leave out test "
            'photos that copy a training photo" on the Train page.'
        )

        unreadable = findings[findings["kind"] == "unreadable"]
        if not unreadable.empty:
            st.subheader("Unreadable files")
            st.warning(f"{len(unreadable)} file(s) cannot be opened as images; training skips them.")
            st.dataframe(unreadable[["source", "class", "path", "reason"]], hide_index=True, key="unreadable")

        st.download_button(
            "Download all findings as CSV",
            frame_csv(findings),
            file_name="wildvision-data-findings.csv",
            mime="text/csv",
            key="findings_csv",
            help="One row per file in a duplicate group (group, kind, folder, class, path, how it matched), then one per unreadable file.",
            disabled=findings.empty,
            on_click="ignore",
        )

        # -----------------------------------------------------------------------------------------
        # Sample photos
        # -----------------------------------------------------------------------------------------
        st.subheader("Sample photos")
        st.caption(f"Up to {SAMPLES} photos of each class folder, spread over its files in name order: a quick look at what each class holds.")
        tabs = st.tabs([md(source) for source in samples])  # a tab label renders Markdown: a folder's name is shown as it is
        for tab, (source, by_class) in zip(tabs, samples.items()):
            with tab:
                for class_name, paths in by_class.items():
                    st.markdown(f"**{md(class_name)}**")
                    cells = st.columns(SAMPLES)
                    for cell, path in zip(cells, paths):
                        show_photo(cell, path, path.name)

    # ---------------------------------------------------------------------------------------------
    # The paper's lists
    # ---------------------------------------------------------------------------------------------

    st.header("The paper's data")
    species = paper.species_table()
    with st.expander(f"Table S7: the species sold in the positive class ({len(species)} entries)"):
        st.caption(
            "The paper's list (Kulkarni & Di Minin 2022, Table S7) of species found for sale in its positive class; their wild "
            "photos make its negative class. NA = not listed in CITES; Nasua narica is printed twice, so 58 entries name 57 taxa."
        )
        st.dataframe(species, hide_index=True, key="species", column_config={"scientific_name": "scientific name", "cites_appendix": "CITES appendix"})
    queries = paper.background_queries()
    with st.expander(f"Table S8: the background search queries ({len(queries)} queries)"):
        st.caption(
            "The paper's list (Table S8) of Google Images queries whose images of background objects (cages, sofas, hands...) "
            "were added to the negative class to make data_bg; spelling as printed."
        )
        st.dataframe(queries, hide_index=True, key="queries")


run_page(page, "Data")
