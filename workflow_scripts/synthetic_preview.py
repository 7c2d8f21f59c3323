"""Rule synthetic_preview: a grid of synthetic samples with their keypoints and mask outlines."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.previews import packed_preview
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        packed_preview(smk.input.h5, smk.output.png)


if __name__ == "__main__":
    main(snakemake)
