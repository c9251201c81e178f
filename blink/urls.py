from __future__ import annotations

from django.urls import include, path

from blink import activation_views
from blink import console as console_views
from blink import views as blink_views
from clients import views as client_views
from directory import views as directory_views

urlpatterns = [
    path("healthz", blink_views.healthz, name="healthz"),
    path("activate/phone/", activation_views.activation_phone, name="activation-phone"),
    path("activate/code/", activation_views.activation_code, name="activation-code"),
    path("activate/done/", activation_views.activation_done, name="activation-done"),
    path("activate/<str:token>/", activation_views.activation_start, name="activation-start"),
    path("brand/<int:company_id>/blink.vcf", activation_views.contact_card, name="contact-card"),
    path("login/", blink_views.LoginView.as_view(), name="login"),
    path("logout/", blink_views.logout_view, name="logout"),
    path("account/password/", blink_views.PasswordChangeView.as_view(), name="password-change"),
    path("", blink_views.console_home, name="console-home"),
    path("setup/", console_views.setup_page, name="blink-user-setup"),
    path("users/", console_views.users_page, name="blink-user-list"),
    path("setup/<int:client_id>/node", console_views.setup_node, name="blink-user-setup-node"),
    path("setup/<int:client_id>/expand", console_views.setup_expand,
         name="blink-user-setup-expand"),
    path("setup/<int:client_id>/search", console_views.setup_search,
         name="blink-user-setup-search"),
    path("setup/<int:client_id>/add", console_views.setup_add, name="blink-user-setup-add"),
    path("users/resend", console_views.users_resend, name="blink-user-resend"),
    path("users/<int:blink_user_id>/edit", console_views.user_edit, name="blink-user-edit"),
    path("users/<int:blink_user_id>/reset", console_views.user_reset, name="blink-user-reset"),
    path("users/<int:blink_user_id>/remove", console_views.user_remove, name="blink-user-remove"),
    path("audit/", blink_views.audit_log, name="audit-log"),
    path("settings/", client_views.settings_general, name="settings-general"),
    path("settings/branding/", client_views.settings_branding, name="settings-branding"),
    path("settings/branding/preview", client_views.branding_preview, name="branding-preview"),
    path(
        "brand/<int:company_id>/logo-<str:version>.png",
        client_views.branding_logo,
        name="branding-logo",
    ),
    path("clients/", client_views.client_list, name="client-list"),
    path("clients/add/", client_views.client_add, name="client-add"),
    path("clients/<int:client_id>/", client_views.client_edit, name="client-edit"),
    path("clients/<int:client_id>/archive", client_views.client_archive, name="client-archive"),
    path("clients/<int:client_id>/restore", client_views.client_restore, name="client-restore"),
    path("clients/<int:client_id>/directory/", directory_views.client_directory,
         name="client-directory"),
    path("clients/<int:client_id>/directory/add/<str:kind>/", directory_views.connection_add,
         name="connection-add"),
    path("clients/<int:client_id>/directory/<int:connection_id>/",
         directory_views.connection_edit, name="connection-edit"),
    path("clients/<int:client_id>/directory/<int:connection_id>/remove",
         directory_views.connection_remove, name="connection-remove"),
    path("clients/<int:client_id>/directory/<int:connection_id>/test",
         directory_views.connection_test, name="connection-test"),
    path("clients/<int:client_id>/directory/<int:connection_id>/sync",
         directory_views.connection_sync, name="connection-sync"),
    path("", include("sms.urls")),
]
