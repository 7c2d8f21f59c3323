"""Rule crop: one shard of a split cropped (2.2x keypoint box, 320 px, left hands mirrored) into a packed file."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.real_data import crop_shard
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        crop_shard(
            smk.input.index,
            smk.params.shard,
            smk.params.shards,
            smk.output.h5,
            smk.output.issues,
            smk.params.num_params,
            box_scale=smk.params.box_scale,
        )


if __name__ == "__main__":
    main(snakemake)
