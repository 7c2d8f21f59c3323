"""Rule backgrounds: the background photos synthetic hands are composited over."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.backgrounds import build_backgrounds
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        build_backgrounds(smk.output.h5, seed=smk.params.seed, **smk.params.backgrounds)


if __name__ == "__main__":
    main(snakemake)
