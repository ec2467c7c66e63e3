from django.contrib import admin
from solo.admin import SingletonModelAdmin

from smtp_settings.models import AdminConfig

admin.site.register(AdminConfig, SingletonModelAdmin)
