"""apicrud's tables as unmanaged Django models (only the columns the peer reads)."""

from django.db import models


class Record(models.Model):
    id = models.CharField(max_length=40, primary_key=True)
    status = models.CharField(max_length=16)
    created = models.DateTimeField()
    modified = models.DateTimeField(null=True)
    version = models.IntegerField()

    class Meta:
        abstract = True


class Person(Record):
    name = models.CharField(max_length=64)
    privacy = models.CharField(max_length=8)

    class Meta:
        managed = False
        db_table = "person"


class Account(Record):
    name = models.CharField(max_length=64)
    uid = models.CharField(max_length=40)
    password = models.CharField(max_length=255)
    is_admin = models.BooleanField()
    last_login = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = "account"


class List(Record):
    uid = models.CharField(max_length=40)
    privacy = models.CharField(max_length=8)

    class Meta:
        managed = False
        db_table = "list"


class ListMember(Record):
    list_id = models.CharField(max_length=40)
    uid = models.CharField(max_length=40)
    authorization = models.CharField(max_length=8)

    class Meta:
        managed = False
        db_table = "listmember"


class Message(Record):
    list_id = models.CharField(max_length=40)
    subject = models.CharField(max_length=128, null=True)
    content = models.TextField(null=True)
    privacy = models.CharField(max_length=8)
    uid = models.CharField(max_length=40)

    class Meta:
        managed = False
        db_table = "message"
