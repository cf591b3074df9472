import pytest
import torch

from conftest import make_class_folder, write_image
from wildvision.data import (
    CenterCropFraction,
    DataFolderError,
    eval_transform,
    file_list_hash,
    make_loader,
    scan_folder,
    stratified_split,
    train_transform,
)


def test_background_joins_the_negatives_only_when_asked(tmp_path):
    root = make_class_folder(tmp_path / "train", {"captive": 4, "wild": 3, "background": 2})
    without = scan_folder(root, with_background=False)
    with_bg = scan_folder(root, with_background=True)
    assert len(without) == 7 and len(with_bg) == 9
    assert {s.class_name for s in with_bg if s.label == 0} == {"wild", "background"}
    assert all(s.label == 1 for s in with_bg if s.class_name == "captive")


def test_positive_class_name_is_configurable(tmp_path):
    root = make_class_folder(tmp_path / "t", {"for_sale": 2, "other": 2})
    assert sum(s.label for s in scan_folder(root, positive="for_sale")) == 2


@pytest.mark.parametrize(
    "counts, message",
    [({"wild": 2}, "no positive class folder 'captive/'"), ({"captive": 2}, "only the class"), ({"captive": 2, "wild": 0}, "holds no images")],
)
def test_unusable_layouts_are_explained(tmp_path, counts, message):
    root = tmp_path / "data"
    for class_name in counts:
        (root / class_name).mkdir(parents=True)
    make_class_folder(root, {k: v for k, v in counts.items() if v})
    with pytest.raises(DataFolderError, match=message):
        scan_folder(root)


def test_missing_folder_is_explained(tmp_path):
    with pytest.raises(DataFolderError, match="does not exist"):
        scan_folder(tmp_path / "nowhere")


def test_split_is_stratified_seeded_and_disjoint(tmp_path):
    root = make_class_folder(tmp_path / "train", {"captive": 50, "wild": 40, "background": 10})
    samples = scan_folder(root)
    train, test = stratified_split(samples, 0.2, seed=3)
    assert len(test) == 20 and len(train) == 80
    assert sorted(s.class_name for s in test).count("background") == 2
    assert not {s.path for s in train} & {s.path for s in test}
    assert stratified_split(samples, 0.2, seed=3) == (train, test)
    assert stratified_split(samples, 0.2, seed=4)[1] != test


def test_file_list_hash_notices_a_changed_dataset(tmp_path):
    root = make_class_folder(tmp_path / "train", {"captive": 3, "wild": 3})
    before = file_list_hash(scan_folder(root), root)
    write_image(root / "wild" / "extra.png", seed=99)
    assert file_list_hash(scan_folder(root), root) != before


def test_centre_crop_keeps_the_middle_85_percent():
    image = torch.arange(200 * 100).reshape(1, 100, 200).float()
    cropped = CenterCropFraction(0.85)(image)
    assert cropped.shape == (1, 85, 170)
    assert cropped[0, 0, 0] == image[0, 8, 15]  # (100 - 85) / 2 rounds to 8


def test_augmentation_gives_normalised_224_pixel_tensors(tmp_path):
    from PIL import Image

    image = Image.open(write_image(tmp_path / "a.png", seed=5, size=(320, 200))).convert("RGB")
    for transform in (train_transform(positive=True), train_transform(positive=False), eval_transform()):
        tensor = transform(image)
        assert tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32
        assert tensor.min() < 0 < tensor.max()  # ImageNet normalisation centres the values
    assert torch.equal(eval_transform()(image), eval_transform()(image))
    torch.manual_seed(0)
    first = train_transform(positive=False)(image)
    torch.manual_seed(1)
    assert not torch.equal(first, train_transform(positive=False)(image))


def test_unreadable_images_are_skipped_not_fatal(tmp_path, caplog):
    root = make_class_folder(tmp_path / "train", {"captive": 3, "wild": 3})
    (root / "wild" / "broken.jpg").write_bytes(b"not a jpeg")
    samples = scan_folder(root)
    batches = [b for b in make_loader(samples, train=False, batch_size=4, num_workers=0) if b is not None]
    assert sum(len(b[1]) for b in batches) == 6
    assert "broken.jpg" in caplog.text


def test_linked_files_and_folders_count_and_a_broken_link_is_named(tmp_path):
    elsewhere = make_class_folder(tmp_path / "elsewhere", {"captive": 3, "wild": 2})
    root = tmp_path / "data"
    (root / "captive").mkdir(parents=True)
    (root / "captive" / "linked").symlink_to(elsewhere / "captive")  # a linked sub-folder
    (root / "captive" / "one.png").symlink_to(elsewhere / "wild" / "img0.png")  # a linked file
    (root / "captive" / "loop").symlink_to(root / "captive")  # a link back up the tree must not loop
    (root / "wild").symlink_to(elsewhere / "wild")  # a linked class folder
    samples = scan_folder(root)
    assert sum(s.label for s in samples) == 3 + 1 and len(samples) == 3 + 1 + 2
    (root / "captive" / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    with pytest.raises(DataFolderError, match=r"1 image link\(s\) in .*captive point to nothing, e.g. .*gone.jpg -> .*deleted.jpg"):
        scan_folder(root)


def test_a_grouped_split_keeps_each_group_on_one_side_and_stays_stratified(tmp_path):
    samples = scan_folder(make_class_folder(tmp_path / "train", {"captive": 50, "wild": 40, "background": 10}))
    groups = [index // 2 for index in range(len(samples))]  # pairs of copies of one photo, within each class
    train, test = stratified_split(samples, 0.2, seed=3, groups=groups)
    group_of = {s.path: g for s, g in zip(samples, groups)}
    assert not {group_of[s.path] for s in train} & {group_of[s.path] for s in test}
    assert len(train) + len(test) == 100 and 18 <= len(test) <= 22
    assert sorted(s.class_name for s in test).count("background") == 2
    assert stratified_split(samples, 0.2, seed=3, groups=groups) == (train, test)
    assert stratified_split(samples, 0.2, seed=3, groups=list(range(100))) == stratified_split(samples, 0.2, seed=3)
