"""Rule heatmaps: 21 Gaussian keypoint heatmaps per crop of one shard."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.real_data import heatmap_shard
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        heatmap_shard(smk.input.h5, smk.input.index, smk.output.h5, **smk.params.heatmaps)


if __name__ == "__main__":
    main(snakemake)
