from videnhance.report import write_report
from videnhance.step import step

sm = snakemake  # noqa: F821 - injected by Snakemake
with step(sm.log[0], sm.threads, "report"):
    write_report(sm.input.scores, sm.input.verdicts, sm.params.scales, sm.output.csv, sm.output.md,
                 sm.output.per_frame, sm.output.gains, sm.params.evaluate["crop_border"], sm.params.degradation)
