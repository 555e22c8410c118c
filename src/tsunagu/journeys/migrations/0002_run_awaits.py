"""What a waiting run awaits moves from the ``Await`` table into the run's own row (``Run.awaits``)."""

from django.db import migrations, models


def copy_awaits(apps, schema_editor):  # type: ignore[no-untyped-def]
    Await = apps.get_model("journeys", "Await")
    Run = apps.get_model("journeys", "Run")
    for event in Await.objects.values_list("event", flat=True).distinct():
        Run.objects.filter(pk__in=Await.objects.filter(event=event).values("run_id")).update(awaits=event)


def copy_back(apps, schema_editor):  # type: ignore[no-untyped-def]
    Await = apps.get_model("journeys", "Await")
    Run = apps.get_model("journeys", "Run")
    rows = []
    for run in Run.objects.exclude(awaits="").select_related("version").iterator():
        steps = {s["id"]: s for s in run.version.definition.get("steps", [])}
        rows.append(Await(run_id=run.pk, workspace_id=run.workspace_id, customer_id=run.customer_id,
                          event=run.awaits, step=run.step, where=steps.get(run.step, {}).get("where", [])))
    Await.objects.bulk_create(rows, batch_size=2000)


class Migration(migrations.Migration):
    dependencies = [("journeys", "0001_initial")]

    operations = [
        migrations.AddField(model_name="run", name="awaits",
                            field=models.CharField(blank=True, default="", max_length=200)),
        migrations.RunPython(copy_awaits, copy_back),
        migrations.AddIndex(model_name="run", index=models.Index(
            condition=models.Q(awaits__gt=""), fields=["customer", "awaits"],
            name="journey_run_await_idx")),
        migrations.DeleteModel(name="Await"),
    ]
