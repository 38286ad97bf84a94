import logging

from utils.logs import configure_cli_logging


def test_command_lines_show_the_project_records_as_plain_lines(capsys):
    configure_cli_logging()
    configure_cli_logging()
    logging.getLogger("scene.readers.views").info("a project record")
    logging.getLogger("websockets.server").info("connection open")
    logging.getLogger("websockets.server").warning("a library's warning")
    # Once each, however often the command lines configured logging: no prefixes, no other library's INFO.
    assert capsys.readouterr().err == "a project record\na library's warning\n"
