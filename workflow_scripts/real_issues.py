"""Rule real_issues: a dataset's skipped and degraded samples counted per split, in one issues.json."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.real_data import merge_issues
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        merge_issues(dict(smk.input.items()), smk.output.json)


if __name__ == "__main__":
    main(snakemake)
