DROP INDEX activities_municipality_started_filters;
CREATE INDEX activities_municipality_started ON activities (municipality, started_at DESC, activity_id DESC);
