"""tensorflow-datasets builders for the datasets ocjax generates or reads."""
