"""An error handler that takes as long as its error_handler_args say ({"sleep": seconds})."""

import time


def main(error_handler_args, **kwargs):
    time.sleep(error_handler_args["sleep"])
