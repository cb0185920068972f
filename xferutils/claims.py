"""``python -m xferutils.claims``: the command of :mod:`xferutils.pages.claims` (compare,
keep), kept at its old place; importing ``xferutils.claims`` gives that module itself."""
import sys

from xferutils.pages import claims as _claims

if __name__ == "__main__":
    sys.exit(_claims.main())
sys.modules[__name__] = _claims
