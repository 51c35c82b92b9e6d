from server.rounds import failure_reason

RAY_ERROR = (
    "<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'ray::ClientAppActor.run()\n"
    '  File "client/app.py", line 52, in _prepare\n'
    "fedge.data.sources.DatasetError: data-path '/x' is not a folder.\n"
    "flwr.clientapp.client_app.ClientAppException: \n"
    "Exception ClientAppException occurred. Message: data-path '/x' is not a folder.'>"
)


def test_failure_reason_keeps_the_clients_message_without_the_traceback():
    assert failure_reason(RAY_ERROR) == "data-path '/x' is not a folder."
    assert failure_reason("no reply within 60s") == "no reply within 60s"
