from dyncdi_hpc.store.summary import varying


def test_the_parameters_that_differ_between_results_are_the_axes():
    params = [
        {"tv_weight": 0.0, "shrinkwrap": {"every": 20, "sigma": 1.0}, "model": "kinematical"},
        {"tv_weight": 1e-3, "shrinkwrap": {"every": 10, "sigma": 1.0}, "model": "kinematical"},
    ]
    assert varying(params) == ["tv_weight", "shrinkwrap.every"]
    assert varying(params[:1]) == []
