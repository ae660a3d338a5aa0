"""Each marked line is a type error that the stubs must catch (tests/test_typing.py)."""
import numpy as np

import fastnll

x = np.zeros((4, 3))
t = np.zeros(4, np.int64)
fastnll.cross_entropy(x, t, reduction="avg")  # E: reduction
a, b = fastnll.cross_entropy(x, t).shape, fastnll.logsumexp(x)
loss, grad = fastnll.cross_entropy(x, t)  # E: no gradient without return_grad
fastnll.set_num_threads("2")  # E: thread count
fastnll.kl_div(x, x, reduction="batch")  # E: kl reduction
value, sign = fastnll.logsumexp(x)  # E: no sign without return_sign
fastnll.entropy(x, axis=(0, 1))  # E: entropy axis
fastnll.softmax(x, axes=1)  # E: unknown keyword
cfg: dict[str, object] = fastnll.show_config()  # E: stdout mode returns None
