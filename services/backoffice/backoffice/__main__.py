from aiohttp import web

from backoffice.app import create_app
from backoffice.settings import Settings
from common.logging import configure_logging


def main() -> None:
    settings = Settings()
    configure_logging(settings.service_name, settings.log_level)
    web.run_app(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=None,
        shutdown_timeout=5,
    )


if __name__ == "__main__":
    main()
