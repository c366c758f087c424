from ops.disk import disk_usage


def test_disk_usage_names_the_path(tmp_path):
    assert str(tmp_path) in disk_usage(str(tmp_path))
