"""The HTML report: `write_report(run, path)` writes a page of registered sections.

One module per concern: `section` (what a section is, and the figure and table helpers),
`sections` and `alignment_section` (the built-in sections), `page` (the document), and
`curve_report` (figures and group statistics of a sweep table).
"""

from probe.report.page import build_report, run_name, write_report
from probe.report.section import SECTIONS, Absent, ReportContext, Section, register_section

__all__ = [
    "SECTIONS",
    "Absent",
    "ReportContext",
    "Section",
    "build_report",
    "register_section",
    "run_name",
    "write_report",
]
