"""Rules read_annotations and stb_mm2px: a dataset split's annotations read into keypoints in image pixels."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.real_data import index_dataset
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        index_dataset(smk.wildcards.dataset, smk.params.root, smk.wildcards.split, smk.params.options, smk.output.index)


if __name__ == "__main__":
    main(snakemake)
