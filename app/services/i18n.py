"""Visitor-facing strings in Russian (the default) and English: a plain dictionary, no catalogue tooling."""

from __future__ import annotations

import re

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"

STRINGS: dict[str, tuple[str, str]] = {
    # SMS texts: short, one segment where possible.
    "sms_code": ("Код для входа: {code}. Никому его не сообщайте.", "Your sign-in code: {code}. Do not share it."),
    "sms_checked_in": (
        "Вы отмечены: {venue}, {start}, до {end}. Выход: ВЫХОД на {short}",
        "Checked in: {venue}, {start}, until {end}. To leave text OUT to {short}",
    ),
    "sms_continued": (
        "Вы уже отмечены: {venue}, до {end}. Выход: ВЫХОД на {short}",
        "Already checked in: {venue}, until {end}. To leave text OUT to {short}",
    ),
    "sms_checked_out": ("Выход отмечен: {venue}, {end}. Спасибо!", "Checked out: {venue}, {end}. Thank you!"),
    "sms_nothing_open": ("Активного посещения нет.", "You have no active visit."),
    "sms_unknown_code": (
        "Код {code} не найден. Отправьте 9 цифр с плаката, например 123456789",
        "Code {code} not found. Send the 9 digits from the poster, e.g. 123456789",
    ),
    "sms_closed": ("Заведение {code} больше не принимает отметки.", "Venue {code} no longer takes check-ins."),
    "sms_help": (
        "Отправьте 9-значный код с плаката (и число гостей: 123456789 3). Выход: ВЫХОД",
        "Send the 9-digit code from the poster (and party size: 123456789 3). To leave: OUT",
    ),
    "sms_bad_party": ("Число гостей: от 1 до 50, например 123456789 3", "Party size: 1 to 50, e.g. 123456789 3"),
    "rate_limited": (
        "Слишком много попыток. Попробуйте снова через {minutes} мин.",
        "Too many attempts. Please try again in {minutes} min.",
    ),
    "too_many_codes": (
        "Слишком много кодов для этого номера. Попробуйте через час.",
        "Too many codes for this number. Please try again in an hour.",
    ),
    # Pages.
    "check_in": ("Отметиться", "Check in"),
    "check_out": ("Завершить посещение", "Check out"),
    "you_are_at": ("Вы у входа", "You are at"),
    "party_size": ("Сколько вас, включая вас", "How many of you, including you"),
    "companion_phones": (
        "Телефоны спутников (необязательно, по одному в строке) — их тоже предупредят",
        "Companions' phone numbers (optional, one per line) — they will be notified too",
    ),
    "phone": ("Номер мобильного телефона", "Mobile phone number"),
    "send_code": ("Получить код по SMS", "Send me a code by SMS"),
    "code": ("Код из SMS", "Code from the SMS"),
    "code_sent": ("Мы отправили код на номер {phone}.", "We sent a code to {phone}."),
    "confirm": ("Подтвердить и отметиться", "Confirm and check in"),
    "confirm_only": ("Подтвердить", "Confirm"),
    "other_number": ("Другой номер", "Use another number"),
    "or": ("или", "or"),
    "mosru": ("Войти через mos.ru", "Sign in with mos.ru"),
    "sms_hint": (
        "Нет смартфона? Отправьте код {code} в SMS на номер {short}.",
        "No smartphone? Text {code} to {short}.",
    ),
    "checked_in_title": ("Вы отмечены", "You are checked in"),
    "continued_title": ("Вы уже отмечены здесь", "You are already checked in here"),
    "checked_out_title": ("Посещение завершено", "You have checked out"),
    "since": ("С", "Since"),
    "planned_end": ("Плановое окончание", "Planned end"),
    "ended_previous": ("Предыдущее посещение ({venue}) завершено.", "Your previous visit ({venue}) was ended."),
    "my_visits": ("Мои посещения", "My visits"),
    "visits": ("Посещения", "Visits"),
    "no_visits": ("Посещений нет.", "No visits."),
    "deleted_on": ("удалится", "deleted on"),
    "open_visit": ("идёт сейчас", "in progress"),
    "notices": ("Уведомления", "Notices"),
    "no_notices": ("Уведомлений нет.", "No notices."),
    "mark_read": ("Прочитано", "Mark as read"),
    "devices": ("Устройства", "Devices"),
    "data_access": ("Кто обращался к моим данным", "Who accessed my data"),
    "no_data_access": ("Никто, кроме вас.", "Nobody but you."),
    "actor_official": ("сотрудник здравоохранения", "a health official"),
    "actor_system": ("система", "the system"),
    "actor_other": ("служба", "a service"),
    "action_case.record": ("зарегистрировал положительный тест", "recorded a positive test"),
    "action_case.annul": ("аннулировал положительный тест", "annulled a positive test"),
    "action_phone.reveal": ("открыл ваш номер телефона", "revealed your phone number"),
    "action_other": ("просмотрел ваши данные", "viewed your data"),
    "this_device": ("это устройство", "this device"),
    "revoke": ("Выйти на этом устройстве", "Sign this device out"),
    "revoked": ("отключено", "signed out"),
    "personal_qr": ("Личный QR-код для сканера на входе", "Personal QR code for the door scanner"),
    "personal_qr_hint": (
        "Код меняется каждые 30 секунд. Обновите страницу, если сканер его не принял.",
        "The code changes every 30 seconds. Reload the page if the scanner refuses it.",
    ),
    "bluetooth": ("Вход по Bluetooth", "Bluetooth check-in"),
    "bluetooth_on": (
        "Включён: городское приложение получило ключ для киосков у входа",
        "On: the city app got its key for the kiosks at building doors",
    ),
    "bluetooth_off_text": (
        "Выключен. Его включает городское приложение; ключ меняется каждые сутки.",
        "Off. The city app turns it on; its key changes every day.",
    ),
    "bluetooth_turn_off": ("Выключить вход по Bluetooth", "Turn Bluetooth check-in off"),
    "erase": ("Удалить мои данные", "Erase my data"),
    "erase_confirm_title": ("Удалить все ваши данные?", "Erase all your data?"),
    "erase_confirm_text": (
        "Будут удалены посещения, спутники, устройства, коды, уведомления и ваш номер. Это нельзя отменить. "
        "Записи журнала доступа хранятся по закону. Если с вами был спутник со своим номером, посещение "
        "останется у него, без вас: так его смогут предупредить.",
        "Your visits, companions, devices, codes, notices and your number will be deleted. This cannot be "
        "undone. Access log entries are kept as the law requires. A visit where a companion gave their own "
        "number stays with them, without you, so they can still be warned.",
    ),
    "erase_yes": ("Да, удалить", "Yes, erase"),
    "erased": ("Ваши данные удалены.", "Your data has been erased."),
    "cancel": ("Отмена", "Cancel"),
    "sign_in_title": ("Вход", "Sign in"),
    "language_other": ("English", "Русский"),
    "correct": ("Исправить время", "Correct the times"),
    "from": ("Начало", "From"),
    "to": ("Окончание", "To"),
    "save": ("Сохранить", "Save"),
    "kiosk_stale": (
        "Этот код уже сменился. Отсканируйте код на экране ещё раз.",
        "This code has changed. Please scan the code on the screen again.",
    ),
    "error_refused": ("Не получилось", "Cannot do that"),
    "error_not_found": ("Не найдено", "Not found"),
    "error_service": ("Сбой сервиса", "Service problem"),
    "home": ("На главную", "Home"),
    "device_revoked": (
        "Этот телефон был отключён. Подтвердите номер ещё раз.",
        "This phone was signed out. Please confirm your number again.",
    ),
}


def normalise_language(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def t(key: str, lang: str = DEFAULT_LANGUAGE, **values: object) -> str:
    ru, en = STRINGS[key]
    text = en if lang == "en" else ru
    return text.format(**values) if values else text


# Refusals a visitor can meet on the Russian pages, by their English text (the text the services raise,
# and the JSON API answers with). The error handler shows the Russian one on visitors' pages;
# tests/app/visitors/test_error_language.py checks that every refusal the visitor-facing code raises is here.
ERRORS_RU: dict[str, str] = {
    # phone numbers and codes
    "Enter your mobile phone number, for example +7 916 123-45-67.": (
        "Введите номер мобильного телефона, например +7 916 123-45-67."
    ),
    "This does not look like a phone number.": "Это не похоже на номер телефона.",
    "This phone number is not valid.": "Такого номера телефона не бывает. Проверьте цифры.",
    "Enter a mobile number that can receive SMS.": "Введите номер мобильного телефона, на который приходят SMS.",
    "Enter the 6 digits from the SMS.": "Введите 6 цифр из SMS.",
    "This sign-in has expired; please ask for a new code.": "Время входа истекло. Запросите новый код.",
    "This code has already been used; please ask for a new code.": "Этот код уже использован. Запросите новый.",
    "This code has expired; please ask for a new code.": "Срок действия кода истёк. Запросите новый.",
    "Too many wrong codes; please ask for a new code.": "Слишком много неверных попыток. Запросите новый код.",
    "Wrong code; please ask for a new code.": "Неверный код. Запросите новый.",
    "This phone was signed out. Please confirm your number again.": (
        "Этот телефон был отключён. Подтвердите номер ещё раз."
    ),
    "This phone is no longer remembered. Please confirm your number again.": (
        "Этот телефон больше не запомнен. Подтвердите номер ещё раз."
    ),
    "No such device among yours.": "Такого устройства среди ваших нет.",
    "Sign-in with mos.ru is not available here.": "Вход через mos.ru здесь недоступен.",
    "mos.ru sign-in was not completed; please try again.": "Вход через mos.ru не завершён. Попробуйте ещё раз.",
    "mos.ru did not say who you are; please try again.": "mos.ru не сообщил, кто вы. Попробуйте ещё раз.",
    "Please sign in to see your visits.": "Войдите, чтобы увидеть свои посещения.",
    # posters and places
    "This QR code is not a valid poster of this service.": "Этот QR-код — не плакат нашего сервиса.",
    "This poster has been replaced; please scan the current poster at the entrance.": (
        "Этот плакат заменён. Отсканируйте новый плакат у входа."
    ),
    "This venue no longer takes check-ins with this poster.": "Заведение больше не принимает отметки по этому плакату.",
    "This entrance is closed; please scan the poster at another entrance.": (
        "Этот вход закрыт. Отсканируйте плакат у другого входа."
    ),
    "This check-in link is not valid.": "Эта ссылка для отметки недействительна.",
    "This venue no longer takes check-ins.": "Заведение больше не принимает отметки.",
    "This entrance belongs to another venue.": "Этот вход относится к другому заведению.",
    "This entrance no longer takes check-ins.": "Этот вход больше не принимает отметки.",
    "The client id must have 1 to 64 characters.": "Идентификатор клиента — от 1 до 64 символов.",
    # parties and visits
    "The party size must be a whole number from 1 to 50.": "Число человек — целое число от 1 до 50.",
    "There are more companion phone numbers than companions: raise the party size or remove a number.": (
        "Номеров спутников больше, чем спутников: увеличьте число человек или уберите номер."
    ),
    "A party has at most 50 people, companions with numbers included.": (
        "В группе не больше 50 человек, включая спутников с номерами."
    ),
    "Too many companion numbers.": "Слишком много номеров спутников.",
    "Another check-in for you is in progress; please try again.": (
        "Другая ваша отметка ещё обрабатывается. Попробуйте ещё раз."
    ),
    "No such visit among yours.": "Такого посещения среди ваших нет.",
    "Enter a date and time.": "Введите дату и время.",
    "Times must include a time zone.": "Время должно быть с часовым поясом.",
    "The visit must end after it starts.": "Посещение должно закончиться позже, чем началось.",
    "A visit cannot end in the future.": "Посещение не может закончиться в будущем.",
    "A visit cannot last longer than 24 hours.": "Посещение не может длиться дольше 24 часов.",
    "A correction can move the start by at most 24 hours.": "Начало можно сдвинуть не больше чем на 24 часа.",
    "These times overlap another of your visits.": "Это время пересекается с другим вашим посещением.",
    "Your data is part of a health case that is still being processed; please try again in a day.": (
        "Ваши данные входят в случай заболевания, который ещё обрабатывается. Попробуйте через день."
    ),
    # the service itself
    "The service is busy; please try again in a moment.": "Сервис занят. Попробуйте через минуту.",
    "Something went wrong on our side. Please try again in a minute.": (
        "У нас что-то пошло не так. Попробуйте через минуту."
    ),
    "The request is too large.": "Слишком большой запрос.",
    "A field contains a NUL character.": "В поле есть недопустимый символ.",
}
# Refusals with a number in them: (English pattern, Russian text with {0}).
_ERROR_PATTERNS_RU = (
    (re.compile(r"Wrong code; (\d+) attempt\(s\) left\."), "Неверный код. Осталось попыток: {0}."),
    (
        re.compile(r"Only visits of the last (\d+) days can be corrected\."),
        "Исправить можно посещения за последние {0} дн.",
    ),
    (re.compile(r"The CSRF .*"), "Страница устарела. Откройте её заново и попробуйте ещё раз."),
)
# Errors without a message of ours (unknown addresses, wrong methods): by status.
_STATUS_RU = {
    400: "Запрос не понят. Откройте страницу заново.",
    404: "Такой страницы нет.",
    405: "Так эту страницу открыть нельзя.",
    413: "Слишком большой запрос.",
}


def localise_error(message: str, lang: str, status: int = 400, ours: bool = True) -> str:
    """A refusal in the visitor's language: the Russian text for a known English one (`ours`: raised by
    this service; otherwise a framework's text, replaced by one for its status). Unknown texts stay."""
    if lang != "ru":
        return message
    if message in ERRORS_RU:
        return ERRORS_RU[message]
    for pattern, russian in _ERROR_PATTERNS_RU:
        matched = pattern.fullmatch(message)
        if matched:
            return russian.format(*matched.groups())
    return message if ours else _STATUS_RU.get(status, message)
