"""Rule segment: hand masks of one shard (the dataset's own, else GrabCut seeded with the skeleton)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.real_data import segment_shard
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        segment_shard(smk.input.h5, smk.output.h5, smk.params.grabcut)


if __name__ == "__main__":
    main(snakemake)
