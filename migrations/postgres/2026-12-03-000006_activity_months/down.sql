DROP TABLE activity_month_topics;
DROP TABLE activity_months;
