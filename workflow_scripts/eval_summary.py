"""Rule eval_summary: every run's metrics on every test set in one table (TSV and HTML)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.eval_summary import write_summary
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        write_summary(list(smk.input.metrics), smk.output.tsv, smk.output.html, list(smk.input.benchmarks))


if __name__ == "__main__":
    main(snakemake)
