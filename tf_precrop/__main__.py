"""``python -m tf_precrop``: the ``tf-precrop`` command (as ``python -m tf_precrop.cli``)."""

import sys

from tf_precrop.cli import main

sys.exit(main())
