"""The tables behind the analysis pages, in plain pandas: the paper's numbers and own runs side by side.

The Results, Efficiency and Generalisation pages show the paper's Tables S1-S4 and Table 1 and own runs in one
layout, and every number says where it came from. The reshaping lives here, without Streamlit, so the pages hold
only widgets and charts and the tests check the tables themselves. Own runs' numbers come from wildvision.catalog.

- tidy: one tidy frame of paper and run numbers; the order every table follows
- grid: the results grid (Tables S1-S3 side by side) and Table 1
- generalisation: the drop from test_in out of distribution (Figs 1, 2)
- efficiency: gain over SqueezeNet (Section 3.3, Fig 3) and measured speed
- run_detail: one model's curves, results and confusion matrices
- export: colours, number formats, CSV, LaTeX and chart PNGs
"""
