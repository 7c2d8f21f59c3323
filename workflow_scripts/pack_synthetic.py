"""Rule pack_synthetic: gather the shards of one split into results/datasets/synthetic_<split>.h5."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.h5io import concat_packed
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        concat_packed(list(smk.input.shards), smk.output.h5, source="synthetic", split=smk.wildcards.split)


if __name__ == "__main__":
    main(snakemake)
